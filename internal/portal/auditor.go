package portal

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/vault"
)

// AuditorVault is what reconciliation needs from the portal's identity.
type AuditorVault interface {
	ListCertificates(ctx context.Context, mount string) ([]string, error)
	ListRevokedCertificates(ctx context.Context, mount string) ([]string, error)
	ReadCertificate(ctx context.Context, mount, serial string) (*vault.StoredCertificate, error)
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
		return nil, pg, storeUnavailable(err)
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
		return storeUnavailable(err)
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
		return nil, storeUnavailable(err)
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
		return nil, storeUnavailable(err)
	}
	users, err := s.store.InventoryByUser(ctx, rep.AsOf, afterUser, ReportUsers+1)
	if err != nil {
		return nil, storeUnavailable(err)
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
		return nil, "", storeUnavailable(err)
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
		return storeUnavailable(err)
	}
	return nil
}

// ReconcileEntry is one certificate in a reconciliation group. Revoked is
// Vault's state, except in inventory_only (Vault has no state there), where
// it is the inventory's; in state_mismatch the inventory says the opposite.
type ReconcileEntry = store.ReconcileEntry

// vaultSerial turns a serial as Vault lists it (aa-bb-… or aa:bb:…) into
// the inventory's form.
func vaultSerial(raw string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(raw), "-", ":"))
}

// isServerCertificate reports whether c is a TLS server certificate that
// cannot authenticate a client: serverAuth without clientAuth (or "any"),
// as the nginx-server role issues them. Nginx refuses such a certificate as
// a client certificate, so it is not a way into the protected site.
// Decided on the certificate itself, not the mount or role it came from, so
// it holds wherever the server certificates are issued.
func isServerCertificate(c *x509.Certificate) bool {
	if c.IsCA {
		return false
	}
	server, client := false, false
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			server = true
		case x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageAny:
			client = true
		}
	}
	return server && !client
}

func (s *Service) auditorVault() (AuditorVault, error) {
	av, ok := s.service.(AuditorVault)
	if !ok {
		return nil, errors.New("reconcile: service identity cannot list certificates")
	}
	return av, nil
}

// vaultRevoked lists Vault's revoked serials in one call. A service policy
// from before LIST <pki>/certs/revoked was granted gets nil: mismatch then
// reads each certificate's revocation_time instead (slower, same answer).
func (s *Service) vaultRevoked(ctx context.Context, av AuditorVault) (map[string]struct{}, error) {
	raw, err := av.ListRevokedCertificates(ctx, s.opts.PKIMount)
	if errors.Is(err, vault.ErrPermissionDenied) {
		s.log.WarnContext(ctx, "reconcile: the service policy lacks list on "+s.opts.PKIMount+"/certs/revoked (rerun certportal setup); reading each certificate instead", "err", err)
		return nil, nil
	}
	if err != nil {
		return nil, vaultUnavailable(err)
	}
	out := make(map[string]struct{}, len(raw))
	for _, r := range raw {
		out[vaultSerial(r)] = struct{}{}
	}
	return out, nil
}

// VaultCertificate is a certificate Vault holds that the inventory does
// not, as the helpdesk sees it before revoking it.
type VaultCertificate struct {
	Serial    string
	Subject   string
	DNSNames  []string
	Emails    []string
	NotBefore time.Time
	NotAfter  time.Time
	Revoked   bool
	// Server: serverAuth without clientAuth, most likely the portal's own
	// Nginx certificate; revoking it takes the protected site down.
	Server bool
}

// VaultOnlyCertificate loads a certificate for the helpdesk's revoke page:
// it must be in Vault and not in the inventory (those are revoked from the
// user's page, on their row), and not a CA.
func (s *Service) VaultOnlyCertificate(ctx context.Context, actor *Identity, serial string) (*VaultCertificate, error) {
	if actor == nil || !actor.Has(RoleHelpdesk) {
		return nil, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	// Vault's own form (aa-bb-…) is accepted too: it is what Vault lists.
	serial, err := certificateSerial(vaultSerial(serial))
	if err != nil {
		return nil, err
	}
	av, err := s.auditorVault()
	if err != nil {
		return nil, err
	}
	switch _, err := s.store.GetCertificate(ctx, serial); {
	case err == nil:
		return nil, &Error{Code: EInvalid, Field: "serial", Message: "error.vault_cert_in_inventory"}
	case !errors.Is(err, store.ErrNotFound):
		return nil, storeUnavailable(err)
	}
	cert, err := av.ReadCertificate(ctx, s.opts.PKIMount, serial)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, &Error{Code: ENotFound, Message: "error.certificate_not_found"}
	}
	if err != nil {
		return nil, vaultUnavailable(err)
	}
	if cert.IsCA {
		// Never from this page: revoking the issuing CA would end every
		// certificate at once. That is a Vault operator's job.
		return nil, &Error{Code: EInvalid, Field: "serial", Message: "error.vault_cert_ca"}
	}
	return &VaultCertificate{Serial: serial, Subject: cert.Subject.CommonName, DNSNames: cert.DNSNames, Emails: cert.EmailAddresses,
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Revoked: !cert.RevokedAt.IsZero(), Server: isServerCertificate(cert.Certificate)}, nil
}

// RevokeVaultOnly revokes, with the portal's identity, a certificate Vault
// holds that the portal never issued (one reconciliation lists as
// vault_only), with a reason and a ticket, on the record. It checks again
// that the serial is not in the inventory and not a CA; a server
// certificate goes only with confirmServer, a deliberate second choice.
// No inventory row is written: the trail is the record.
func (s *Service) RevokeVaultOnly(ctx context.Context, actor *Identity, serial, reason, ticket string, confirmServer bool) (*VaultCertificate, error) {
	if actor == nil || !actor.Has(RoleHelpdesk) {
		return nil, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	serial, err := certificateSerial(vaultSerial(serial))
	if err != nil {
		return nil, err
	}
	// Every field is checked before Vault is asked anything.
	if !slices.Contains(HelpdeskReasons, reason) {
		return nil, Invalid("reason", "error.reason_invalid")
	}
	if ticket, err = validTicket(ticket); err != nil {
		return nil, err
	}
	vc, err := s.VaultOnlyCertificate(ctx, actor, serial)
	if err != nil {
		return nil, err
	}
	if vc.Revoked {
		return vc, &Error{Code: EInvalid, Field: "serial", Message: "error.already_revoked"}
	}
	if vc.Server && !confirmServer {
		return vc, Invalid("confirm_server", "error.vault_cert_confirm")
	}
	details := map[string]string{"reason": reason, "ticket": ticket, "subject": vc.Subject, "inventory": "none"}
	if vc.Server {
		details["server_certificate"] = "true"
	}
	user := s.userOf(vc.Subject)
	// As every revocation: the intent is on the record before Vault is
	// asked, or Vault is not asked (fail closed).
	if err := s.record(ctx, s.newEvent(ctx, actor.Username, user, audit.ActionRevoke, audit.OutcomeIntent, serial, details)); err != nil {
		return vc, err
	}
	if err := s.service.Revoke(ctx, s.opts.PKIMount, serial); err != nil {
		if aerr := s.record(ctx, s.newEvent(ctx, actor.Username, user, audit.ActionRevoke, audit.OutcomeFailure, serial, details)); aerr != nil {
			s.log.ErrorContext(ctx, "audit write failed for a failed revocation", "serial", serial, "err", aerr)
		}
		return vc, &Error{Code: EUnavailable, Message: "error.vault_unavailable_revoke", Err: err}
	}
	if err := s.record(ctx, s.newEvent(ctx, actor.Username, user, audit.ActionRevoke, audit.OutcomeSuccess, serial, details)); err != nil {
		// Revoked, its intent on the record but not its outcome:
		// reconciliation lists it as vault_only, now revoked, and the log
		// says who did it. (There is no inventory row for the outbox to
		// retry.)
		s.log.ErrorContext(ctx, "vault-only certificate revoked but not recorded", "serial", serial, "by", actor.Username, "err", err)
		return vc, err
	}
	s.opts.Metrics.Revoked(reason)
	s.log.InfoContext(ctx, "vault-only certificate revoked", "serial", serial, "subject", vc.Subject, "by", actor.Username, "reason", reason, "ticket", ticket)
	vc.Revoked = true
	return vc, nil
}

// userOf is the portal user a certificate's CN names (<user>@<domain>,
// matched case-insensitively as Vault matches it: userOfAddress), for the
// trail's subject column and automatic revocation; "" when it names none.
func (s *Service) userOf(cn string) string {
	return userOfAddress(cn, s.opts.EmailDomain)
}
