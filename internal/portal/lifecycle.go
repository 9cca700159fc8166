package portal

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

// serialPattern is Vault's serial form: lowercase hex pairs joined by ':'
// (at most 20 bytes, RFC 5280). Anything else is refused before any lookup.
var serialPattern = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){0,19}$`)

// NormalizeSerial accepts upper or lower case and returns Vault's form.
func NormalizeSerial(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if !serialPattern.MatchString(s) {
		return "", Invalid("serial", "error.serial_invalid")
	}
	return s, nil
}

// Revocation reasons a user or the helpdesk may give (RFC 5280 names).
var (
	UserReasons     = []string{"lost", "compromised", "superseded"}
	HelpdeskReasons = []string{"lost", "compromised", "superseded", "left_company", "other"}
)

// Status is what the inventory shows for a certificate.
type Status string

const (
	StatusActive   Status = "active"
	StatusExpiring Status = "expiring"
	StatusExpired  Status = "expired"
	StatusRevoked  Status = "revoked"
)

// CertificateView is an inventory row with its derived status.
type CertificateView struct {
	*store.Certificate
	Status   Status
	DaysLeft int
}

func (s *Service) view(c *store.Certificate) CertificateView {
	now := s.now()
	v := CertificateView{Certificate: c, DaysLeft: int(c.NotAfter.Sub(now).Hours() / 24)}
	switch {
	case c.Revoked():
		v.Status = StatusRevoked
	case !now.Before(c.NotAfter):
		v.Status, v.DaysLeft = StatusExpired, 0
	case c.NotAfter.Sub(now) <= s.opts.ExpiringSoon:
		v.Status = StatusExpiring
	default:
		v.Status = StatusActive
	}
	return v
}

// Certificates lists username's certificates, newest first.
func (s *Service) Certificates(ctx context.Context, username string) ([]CertificateView, error) {
	rows, err := s.store.ListCertificates(ctx, store.CertificateFilter{Username: username})
	if err != nil {
		return nil, &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	out := make([]CertificateView, len(rows))
	for i, c := range rows {
		out[i] = s.view(c)
	}
	return out, nil
}

// MaxActive is the per-user cap on active certificates.
func (s *Service) MaxActive() int { return s.opts.MaxActive }

// ownCertificate loads serial and checks it belongs to id. Someone else's
// serial is refused exactly like an unknown one would be for an attacker who
// guesses: 403 if it exists, 404 if not — serials are 160-bit random, so the
// difference reveals nothing useful.
func (s *Service) ownCertificate(ctx context.Context, id *Identity, serial string) (*store.Certificate, error) {
	serial, err := NormalizeSerial(serial)
	if err != nil {
		return nil, err
	}
	c, err := s.store.GetCertificate(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &Error{Code: ENotFound, Message: "error.certificate_not_found"}
	}
	if err != nil {
		return nil, &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	if c.Username != id.Username {
		s.RecordDenied(ctx, id, "certificate "+c.Serial+" of "+c.Username)
		return nil, &Error{Code: EForbidden, Message: "error.not_your_certificate", Err: errors.New(id.Username + " asked for a certificate of " + c.Username)}
	}
	return c, nil
}

// Certificate returns one of id's own certificates (for the confirm page).
func (s *Service) Certificate(ctx context.Context, id *Identity, serial string) (CertificateView, error) {
	c, err := s.ownCertificate(ctx, id, serial)
	if err != nil {
		return CertificateView{}, err
	}
	return s.view(c), nil
}

// RevokeOwn revokes one of the user's own certificates.
func (s *Service) RevokeOwn(ctx context.Context, id *Identity, serial, reason string) (*store.Certificate, error) {
	if !id.Has(RoleEmployee) {
		return nil, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	c, err := s.ownCertificate(ctx, id, serial)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(UserReasons, reason) {
		return nil, Invalid("reason", "error.reason_invalid")
	}
	if c.Revoked() {
		return nil, &Error{Code: EInvalid, Field: "serial", Message: "error.already_revoked"}
	}
	return c, s.revoke(ctx, id.Username, audit.ActionRevoke, c, store.Revocation{At: s.now(), Reason: reason, By: id.Username})
}

// revoke revokes in Vault with the portal's identity, then records it with
// its audit event in one transaction. The order matters: if the record
// fails, the certificate is revoked but shown active — safe, and
// reconciliation finds it — never the reverse. An audit store that fails
// before the Vault call stops the revocation (fail closed).
func (s *Service) revoke(ctx context.Context, actor, action string, c *store.Certificate, r store.Revocation) error {
	details := map[string]string{"reason": r.Reason, "ticket": r.Ticket, "subject": c.Subject}
	if err := s.service.Revoke(ctx, s.opts.PKIMount, c.Serial); err != nil {
		if aerr := s.record(ctx, s.newEvent(ctx, actor, c.Username, action, audit.OutcomeFailure, c.Serial, details)); aerr != nil {
			s.log.ErrorContext(ctx, "audit write failed for a failed revocation", "serial", c.Serial, "err", aerr)
		}
		return &Error{Code: EUnavailable, Message: "error.vault_unavailable_revoke", Err: err}
	}
	if err := s.store.RecordRevocation(ctx, c.Serial, r, s.newEvent(ctx, actor, c.Username, action, audit.OutcomeSuccess, c.Serial, details)); err != nil {
		s.opts.Metrics.Revoked(r.Reason)
		s.opts.Metrics.AuditFailure()
		s.log.ErrorContext(ctx, "certificate revoked in Vault but not recorded; reconciliation will show it", "serial", c.Serial, "err", err)
		return &Error{Code: EUnavailable, Message: "error.audit_unavailable", Err: err}
	}
	s.opts.Metrics.Revoked(r.Reason)
	s.log.InfoContext(ctx, "certificate revoked", "serial", c.Serial, "user", c.Username, "by", r.By, "reason", r.Reason, "ticket", r.Ticket)
	return nil
}

// UserResult is a helpdesk search hit.
type UserResult struct {
	Username string
	Active   int
	Total    int
}

var prefixPattern = regexp.MustCompile(`^[a-z0-9._-]{0,64}$`)

// SearchUsers finds users by name prefix: those in the inventory and those
// Vault knows that never enrolled.
func (s *Service) SearchUsers(ctx context.Context, actor *Identity, prefix string) ([]UserResult, error) {
	if !actor.Has(RoleHelpdesk) {
		return nil, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	prefix = strings.ToLower(strings.TrimSpace(prefix))
	if !prefixPattern.MatchString(prefix) {
		return nil, Invalid("q", "error.search_invalid")
	}
	found, err := s.store.SearchUsers(ctx, prefix, s.now(), 100)
	if err != nil {
		return nil, &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	byName := map[string]UserResult{}
	for _, u := range found {
		byName[u.Username] = UserResult{u.Username, u.Active, u.Total}
	}
	if users, err := s.service.ListUsers(ctx, s.opts.UserpassMount); err != nil {
		// The inventory alone still answers; say so in the log.
		s.log.WarnContext(ctx, "helpdesk search: Vault user list unavailable", "err", err)
	} else {
		for _, u := range users {
			if strings.HasPrefix(u, prefix) {
				if _, ok := byName[u]; !ok {
					byName[u] = UserResult{Username: u}
				}
			}
		}
	}
	out := make([]UserResult, 0, len(byName))
	for _, u := range byName {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Username < out[j].Username })
	if len(out) > 100 {
		out = out[:100]
	}
	return out, nil
}

// UserCertificates is the helpdesk view of a user's certificates.
func (s *Service) UserCertificates(ctx context.Context, actor *Identity, username string) ([]CertificateView, error) {
	if !actor.Has(RoleHelpdesk) {
		return nil, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	if !usernamePattern.MatchString(username) {
		return nil, &Error{Code: ENotFound, Message: "error.not_found"}
	}
	return s.Certificates(ctx, username)
}

// HelpdeskRevoke revokes any user's certificate; reason and ticket are required
// so that every helpdesk action can be traced to a request.
func (s *Service) HelpdeskRevoke(ctx context.Context, actor *Identity, serial, reason, ticket string, reissue bool) (*store.Certificate, error) {
	if !actor.Has(RoleHelpdesk) {
		return nil, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	serial, err := NormalizeSerial(serial)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(HelpdeskReasons, reason) {
		return nil, Invalid("reason", "error.reason_invalid")
	}
	ticket, err = validTicket(ticket)
	if err != nil {
		return nil, err
	}
	c, err := s.store.GetCertificate(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &Error{Code: ENotFound, Message: "error.certificate_not_found"}
	}
	if err != nil {
		return nil, &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	if c.Revoked() {
		return nil, &Error{Code: EInvalid, Field: "serial", Message: "error.already_revoked"}
	}
	action := audit.ActionRevoke
	if reissue {
		action = audit.ActionReissue
	}
	return c, s.revoke(ctx, actor.Username, action, c, store.Revocation{At: s.now(), Reason: reason, By: actor.Username, Ticket: ticket})
}

// validTicket checks a helpdesk ticket reference: required, so that every
// helpdesk action can be traced to a request, and short plain text.
func validTicket(ticket string) (string, error) {
	ticket = strings.TrimSpace(ticket)
	if ticket == "" || len(ticket) > 64 || strings.ContainsAny(ticket, "\r\n\t<>\"") {
		return "", Invalid("ticket", "error.ticket_invalid")
	}
	return ticket, nil
}

// OnBehalfEnabled reports whether helpdesk staff may issue for other users.
func (s *Service) OnBehalfEnabled() bool { return s.opts.OnBehalfRole != "" }

// IssueOnBehalf lets helpdesk staff issue a certificate for another user —
// for someone who cannot enrol themselves — when the operator switched it on.
// Vault decides with the staff member's own token, on a role of its own that
// only the helpdesk policy may use; the inventory names the staff member as
// issuer and the audit event carries the ticket. The .p12 goes to the staff
// member, who hands it and its password over; the user's cap still applies.
func (s *Service) IssueOnBehalf(ctx context.Context, actor *Identity, username, ticket string, req IssueRequest) (*Download, error) {
	if !actor.Has(RoleHelpdesk) || !s.OnBehalfEnabled() {
		return nil, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	if !usernamePattern.MatchString(username) {
		return nil, &Error{Code: ENotFound, Message: "error.not_found"}
	}
	if username == actor.Username {
		return nil, Invalid("username", "error.onbehalf_self")
	}
	ticket, err := validTicket(ticket)
	if err != nil {
		return nil, err
	}
	req.RenewSerial, req.RevokeOld = "", false
	ttl, enc, err := req.Validate(s.opts)
	if err != nil {
		return nil, err
	}
	// A certificate for a name nobody logs in with would be one nobody
	// can be held to: the user must exist in Vault.
	users, err := s.service.ListUsers(ctx, s.opts.UserpassMount)
	if err != nil {
		return nil, &Error{Code: EUnavailable, Message: "error.vault_unavailable", Err: err}
	}
	if !slices.Contains(users, username) {
		return nil, &Error{Code: ENotFound, Message: "error.user_not_found"}
	}
	active, err := s.store.CountActive(ctx, username, s.now())
	if err != nil {
		return nil, &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: err}
	}
	if active >= s.opts.MaxActive {
		return nil, &Error{Code: EForbidden, Message: "error.onbehalf_cap", Err: fmt.Errorf("%s has %d active certificates", username, active)}
	}
	return s.issue(ctx, issuance{
		token: actor.Token, role: s.opts.OnBehalfRole, actor: actor.Username, username: username,
		action: audit.ActionIssueOnBehalf, details: map[string]string{"ticket": ticket},
		ttl: ttl, enc: enc, password: req.Password,
	})
}

// Now is the service's clock (tests may move it).
func (s *Service) Now() time.Time { return s.now() }
