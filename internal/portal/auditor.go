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

// AuditPage returns one page of events, newest first, and the id to pass as
// BeforeID for the next page (0 when this is the last).
func (s *Service) AuditPage(ctx context.Context, id *Identity, f store.AuditFilter) ([]*audit.Event, int64, error) {
	if err := s.requireAuditor(id); err != nil {
		return nil, 0, err
	}
	f.Limit = PageSize + 1
	events, err := s.store.QueryAudit(ctx, f)
	if err != nil {
		return nil, 0, &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	var next int64
	if len(events) > PageSize {
		events = events[:PageSize]
		next = events[PageSize-1].ID
	}
	return events, next, nil
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
	f.BeforeID = 0
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

// InventoryReport summarises every certificate the portal issued.
type InventoryReport struct {
	Active, Expiring7, Expiring30, Expired, Revoked int
	ByUser                                          []UserResult
}

// maxReportRows bounds the inventory read for a report.
const maxReportRows = 200000

// Inventory builds the inventory report.
func (s *Service) Inventory(ctx context.Context, id *Identity) (*InventoryReport, error) {
	if err := s.requireAuditor(id); err != nil {
		return nil, err
	}
	rows, err := s.store.ListCertificates(ctx, store.CertificateFilter{Limit: maxReportRows})
	if err != nil {
		return nil, &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	now := s.now()
	rep := &InventoryReport{}
	users := map[string]*UserResult{}
	for _, c := range rows {
		u := users[c.Username]
		if u == nil {
			u = &UserResult{Username: c.Username}
			users[c.Username] = u
		}
		u.Total++
		switch left := c.NotAfter.Sub(now); {
		case c.Revoked():
			rep.Revoked++
		case left <= 0:
			rep.Expired++
		default:
			rep.Active++
			u.Active++
			if left <= 7*24*time.Hour {
				rep.Expiring7++
			}
			if left <= 30*24*time.Hour {
				rep.Expiring30++
			}
		}
	}
	for _, u := range users {
		rep.ByUser = append(rep.ByUser, *u)
	}
	sort.Slice(rep.ByUser, func(i, j int) bool { return rep.ByUser[i].Username < rep.ByUser[j].Username })
	return rep, nil
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
