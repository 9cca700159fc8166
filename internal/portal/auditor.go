package portal

import (
	"context"
	"crypto/x509"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

// AuditorVault is what reconciliation needs from the portal's identity.
type AuditorVault interface {
	ListCertificates(ctx context.Context, mount string) ([]string, error)
	ReadCertificate(ctx context.Context, mount, serial string) (*x509.Certificate, error)
}

func (s *Service) requireAuditor(id *Identity) error {
	if id == nil || !id.Has(RoleAuditor) {
		return &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	return nil
}

// PageSize is the audit page length.
const PageSize = 50

// AuditPaging says where the neighbouring pages of an audit page start; 0
// where there is none.
type AuditPaging struct {
	Older int64 // pass as BeforeID
	Newer int64 // pass as AfterID
}

// AuditPage returns one page of events, newest first, and where the older
// and newer pages start. Pages are keyset pages both ways: BeforeID goes
// back in time, AfterID forward, so a page stays stable while events are
// appended.
func (s *Service) AuditPage(ctx context.Context, id *Identity, f store.AuditFilter) ([]*audit.Event, AuditPaging, error) {
	var pg AuditPaging
	if err := s.requireAuditor(id); err != nil {
		return nil, pg, err
	}
	f.Limit = PageSize + 1
	events, err := s.store.QueryAudit(ctx, f)
	if err != nil {
		return nil, pg, &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	more := len(events) > PageSize
	if f.AfterID > 0 {
		// The extra event is the newest: it starts the next newer page.
		if more {
			events = events[1:]
		}
		if len(events) > 0 {
			if more {
				pg.Newer = events[0].ID
			}
			pg.Older = events[len(events)-1].ID
		} else {
			pg.Older = f.AfterID + 1
		}
		return events, pg, nil
	}
	if more {
		events = events[:PageSize]
		pg.Older = events[PageSize-1].ID
	}
	if f.BeforeID > 0 {
		pg.Newer = f.BeforeID - 1
		if len(events) > 0 {
			pg.Newer = events[0].ID
		}
	}
	return events, pg, nil
}

// AuditExport streams the filtered events to fn, oldest first. The export
// itself is recorded first: who took the trail out, and with which filter.
func (s *Service) AuditExport(ctx context.Context, id *Identity, f store.AuditFilter, format string, fn func(*audit.Event) error) error {
	if err := s.requireAuditor(id); err != nil {
		return err
	}
	if err := s.record(ctx, s.newEvent(ctx, id.Username, "", audit.ActionAuditExport, audit.OutcomeSuccess, f.Serial,
		map[string]string{"format": format, "filter": describeFilter(f)})); err != nil {
		return err
	}
	f.BeforeID, f.AfterID = 0, 0
	if err := s.store.StreamAudit(ctx, f, fn); err != nil {
		return &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	return nil
}

func describeFilter(f store.AuditFilter) string {
	var parts []string
	for k, v := range map[string]string{"actor": f.Actor, "subject": f.Subject, "action": f.Action, "outcome": f.Outcome, "serial": f.Serial} {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	if !f.From.IsZero() {
		parts = append(parts, "from="+fmtTime(f.From))
	}
	if !f.To.IsZero() {
		parts = append(parts, "to="+fmtTime(f.To))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// AuditDaily returns the last days of activity for the chart, one entry per
// day (zeros included), oldest first.
func (s *Service) AuditDaily(ctx context.Context, id *Identity, days int) ([]store.DayCount, error) {
	if err := s.requireAuditor(id); err != nil {
		return nil, err
	}
	end := s.now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	start := end.Add(-time.Duration(days) * 24 * time.Hour)
	counts, err := s.store.AuditDaily(ctx, start, end)
	if err != nil {
		return nil, &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	byDay := map[time.Time]store.DayCount{}
	for _, c := range counts {
		byDay[c.Day] = c
	}
	out := make([]store.DayCount, days)
	for i := range out {
		d := start.Add(time.Duration(i) * 24 * time.Hour)
		out[i] = byDay[d]
		out[i].Day = d
	}
	return out, nil
}

// InventoryReport summarises every certificate the portal issued, as of
// one moment. The counts are computed by the store (SQL aggregation), so
// the report costs the same whatever the inventory's size.
type InventoryReport struct {
	AsOf time.Time
	store.InventoryCounts
	ByUser []UserResult
	// NextUser: the list of users continues after this name ("" at the end).
	NextUser string
}

// maxReportRows bounds the inventory read for reconciliation.
const maxReportRows = 200000

// ReportUsers is how many users one page of the report lists.
const ReportUsers = 100

// Inventory builds the inventory report at the service's clock, listing
// users after afterUser.
func (s *Service) Inventory(ctx context.Context, id *Identity, afterUser string) (*InventoryReport, error) {
	if err := s.requireAuditor(id); err != nil {
		return nil, err
	}
	rep := &InventoryReport{AsOf: s.now()}
	var err error
	if rep.InventoryCounts, err = s.store.InventoryCounts(ctx, rep.AsOf); err != nil {
		return nil, &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	users, err := s.store.InventoryByUser(ctx, rep.AsOf, afterUser, ReportUsers+1)
	if err != nil {
		return nil, &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	if len(users) > ReportUsers {
		users = users[:ReportUsers]
		rep.NextUser = users[ReportUsers-1].Username
	}
	for _, u := range users {
		rep.ByUser = append(rep.ByUser, UserResult{Username: u.Username, Active: u.Active, Total: u.Total})
	}
	return rep, nil
}

// InventoryCertificates is one page of the certificates behind a count of
// the report, in serial order, and the serial the next page starts after
// ("" on the last page). f.At should be the report's moment, so the pages
// agree with the count they came from; zero means now.
func (s *Service) InventoryCertificates(ctx context.Context, id *Identity, f store.InventoryFilter) ([]CertificateView, string, error) {
	if err := s.requireAuditor(id); err != nil {
		return nil, "", err
	}
	if f.At.IsZero() {
		f.At = s.now()
	}
	f.Limit = PageSize + 1
	rows, err := s.store.ListInventory(ctx, f)
	if err != nil {
		return nil, "", &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	next := ""
	if len(rows) > PageSize {
		rows = rows[:PageSize]
		next = rows[PageSize-1].Serial
	}
	out := make([]CertificateView, len(rows))
	for i, c := range rows {
		out[i] = s.viewAt(c, f.At)
	}
	return out, next, nil
}

// InventoryExport streams f's certificates to fn, in serial order, after
// recording who took the inventory out and which part of it.
func (s *Service) InventoryExport(ctx context.Context, id *Identity, f store.InventoryFilter, fn func(CertificateView) error) error {
	if err := s.requireAuditor(id); err != nil {
		return err
	}
	if f.At.IsZero() {
		f.At = s.now()
	}
	what := "inventory"
	if f.State != "" {
		what += " state=" + f.State
	}
	if f.Username != "" {
		what += " user=" + f.Username
	}
	if err := s.record(ctx, s.newEvent(ctx, id.Username, "", audit.ActionAuditExport, audit.OutcomeSuccess, "",
		map[string]string{"format": "csv", "filter": what, "as_of": fmtTime(f.At)})); err != nil {
		return err
	}
	if err := s.store.StreamInventory(ctx, f, func(c *store.Certificate) error { return fn(s.viewAt(c, f.At)) }); err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			return err
		}
		return &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	return nil
}

// VaultOnly is a certificate Vault holds that the portal never issued.
type VaultOnly struct {
	Serial   string
	Subject  string
	NotAfter time.Time
}

// Reconciliation compares Vault's certificates with the inventory.
type Reconciliation struct {
	VaultOnly      []VaultOnly          // issued around the portal
	InventoryOnly  []*store.Certificate // recorded but unknown to Vault
	VaultTotal     int
	InventoryTotal int
}

// Reconcile lists certificates issued around the portal and inventory rows
// Vault does not know. CA certificates in the mount are not user certificates
// and are left out.
func (s *Service) Reconcile(ctx context.Context, id *Identity) (*Reconciliation, error) {
	if err := s.requireAuditor(id); err != nil {
		return nil, err
	}
	av, ok := s.service.(AuditorVault)
	if !ok {
		return nil, errors.New("reconcile: service identity cannot list certificates")
	}
	serials, err := av.ListCertificates(ctx, s.opts.PKIMount)
	if err != nil {
		return nil, &Error{Code: EUnavailable, Message: "error.vault_unavailable", Err: err}
	}
	rows, err := s.store.ListCertificates(ctx, store.CertificateFilter{Limit: maxReportRows})
	if err != nil {
		return nil, &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	inInventory := map[string]*store.Certificate{}
	for _, c := range rows {
		inInventory[c.Serial] = c
	}
	rec := &Reconciliation{VaultTotal: len(serials), InventoryTotal: len(rows)}
	inVault := map[string]bool{}
	for _, raw := range serials {
		serial := strings.ToLower(strings.ReplaceAll(raw, "-", ":"))
		inVault[serial] = true
		if inInventory[serial] != nil {
			continue
		}
		cert, err := av.ReadCertificate(ctx, s.opts.PKIMount, serial)
		if err != nil {
			return nil, &Error{Code: EUnavailable, Message: "error.vault_unavailable", Err: err}
		}
		if cert.IsCA {
			rec.VaultTotal--
			continue
		}
		rec.VaultOnly = append(rec.VaultOnly, VaultOnly{Serial: serial, Subject: cert.Subject.CommonName, NotAfter: cert.NotAfter})
	}
	for _, c := range rows {
		if !inVault[c.Serial] {
			rec.InventoryOnly = append(rec.InventoryOnly, c)
		}
	}
	if err := s.record(ctx, s.newEvent(ctx, id.Username, "", audit.ActionReconcile, audit.OutcomeSuccess, "", map[string]string{
		"vault_only": itoa(len(rec.VaultOnly)), "inventory_only": itoa(len(rec.InventoryOnly))})); err != nil {
		return nil, err
	}
	return rec, nil
}
