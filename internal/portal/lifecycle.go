package portal

import (
	"context"
	"errors"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

// serialPattern is Vault's serial form: lowercase hex pairs joined by ':'
// (at most 20 bytes, RFC 5280). Anything else is refused before any lookup.
var serialPattern = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){0,19}$`)

// hexPattern is a serial with its separators taken out.
var hexPattern = regexp.MustCompile(`^([0-9a-f]{2}){1,20}$`)

// NormalizeSerial returns Vault's form of a serial typed or pasted in any
// of the forms people meet it in: Vault's ("3a:0f:…"), upper case, without
// separators as nginx's $ssl_client_serial and openssl print it
// ("3A0F…"), or with dashes or spaces between the pairs.
func NormalizeSerial(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if serialPattern.MatchString(s) {
		return s, nil
	}
	s = strings.TrimPrefix(s, "0x")
	bare := strings.Map(func(r rune) rune {
		switch r {
		case ':', '-', ' ':
			return -1
		}
		return r
	}, s)
	if len(s) > 3*20 || !hexPattern.MatchString(bare) {
		return "", Invalid("serial", "error.serial_invalid")
	}
	pairs := make([]string, 0, len(bare)/2)
	for i := 0; i < len(bare); i += 2 {
		pairs = append(pairs, bare[i:i+2])
	}
	return strings.Join(pairs, ":"), nil
}

// certificateSerial is NormalizeSerial for the serial that names the
// certificate a page or an action is about: the one in its address
// (/certificates/{serial}/revoke) or the renew form's hidden field, never
// one the user typed. Malformed, it is a page-level 404 ("this certificate
// address is not valid"), not "check the field Serial" on a page without
// one: the address names no certificate, as an unknown serial's does.
func certificateSerial(s string) (string, error) {
	serial, err := NormalizeSerial(s)
	if err != nil {
		return "", &Error{Code: ENotFound, Message: "error.certificate_address_invalid", Err: err}
	}
	return serial, nil
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

func (s *Service) view(c *store.Certificate) CertificateView { return s.viewAt(c, s.now()) }

// ClockAllowance is how far the portal's clock may be off Vault's without
// changing what users are told: not_after is Vault's clock, now the
// portal's. Beyond it the portal warns (CERTPORTAL_CLOCK_SKEW_WARN).
const ClockAllowance = 5 * time.Minute

// viewAt derives the certificate's status at now (a report's moment).
func (s *Service) viewAt(c *store.Certificate, now time.Time) CertificateView {
	// Days left round up — a certificate issued a moment ago for one day
	// has one day left, not zero — after taking off ClockAllowance, or a
	// portal a minute behind Vault shows a new 30-day certificate with 31
	// days left. While valid, at least one day is left.
	left := c.NotAfter.Sub(now) - ClockAllowance
	v := CertificateView{Certificate: c, DaysLeft: max(1, int(math.Ceil(left.Hours()/24)))}
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
		return nil, storeUnavailable(err)
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
// serial is answered exactly as an unknown one is (ENotFound, the same
// message): a 403 would tell an employee that the serial exists, and whose
// it may be, from a leaked link or a guess. The attempt still goes to the
// trail (access.denied). Staff who may see every user's certificates
// (helpdesk, auditors) learn nothing from the difference, so they are told
// plainly that it is not theirs; their own pages keep their access.
func (s *Service) ownCertificate(ctx context.Context, id *Identity, serial string) (*store.Certificate, error) {
	serial, err := certificateSerial(serial)
	if err != nil {
		return nil, err
	}
	c, err := s.store.GetCertificate(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &Error{Code: ENotFound, Message: "error.certificate_not_found"}
	}
	if err != nil {
		return nil, storeUnavailable(err)
	}
	if c.Username != id.Username {
		s.RecordDenied(ctx, id, "certificate "+c.Serial+" of "+c.Username)
		cause := errors.New(id.Username + " asked for a certificate of " + c.Username)
		if id.Has(RoleHelpdesk) || id.Has(RoleAuditor) {
			return nil, &Error{Code: EForbidden, Message: "error.not_your_certificate", Err: cause}
		}
		return nil, &Error{Code: ENotFound, Message: "error.certificate_not_found", Err: cause}
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
// its audit event in one transaction. An intent event comes first: if the
// trail refuses it, Vault is not asked (fail closed), and once Vault has
// revoked, the trail holds at least the intent — who, which certificate,
// reason and ticket — whatever happens to the record afterwards. A record
// that fails then is retried from the outbox (outbox.go); until it lands the
// certificate is revoked but shown active — safe, and reconciliation finds
// it — never the reverse.
func (s *Service) revoke(ctx context.Context, actor, action string, c *store.Certificate, r store.Revocation) error {
	return s.revokeWith(ctx, actor, action, c, r, nil)
}

// revokeWith is revoke with details of the caller's own (the offboarding
// sweep's evidence) added to the intent, result and retried events.
func (s *Service) revokeWith(ctx context.Context, actor, action string, c *store.Certificate, r store.Revocation, extra map[string]string) error {
	details := map[string]string{"reason": r.Reason, "ticket": r.Ticket, "subject": c.Subject}
	for k, v := range extra {
		details[k] = v
	}
	if err := s.record(ctx, s.newEvent(ctx, actor, c.Username, action, audit.OutcomeIntent, c.Serial, details)); err != nil {
		return err
	}
	if err := s.service.Revoke(ctx, s.opts.PKIMount, c.Serial); err != nil {
		if aerr := s.record(ctx, s.newEvent(ctx, actor, c.Username, action, audit.OutcomeFailure, c.Serial, details)); aerr != nil {
			s.log.ErrorContext(ctx, "audit write failed for a failed revocation", "serial", c.Serial, "err", aerr)
		}
		return &Error{Code: EUnavailable, Message: "error.vault_unavailable_revoke", Err: err}
	}
	s.opts.Metrics.Revoked(r.Reason)
	if err := s.store.RecordRevocation(context.WithoutCancel(ctx), c.Serial, r, s.newEvent(ctx, actor, c.Username, action, audit.OutcomeSuccess, c.Serial, details)); err != nil {
		s.opts.Metrics.AuditFailure()
		s.log.ErrorContext(ctx, "certificate revoked in Vault but not recorded; retrying from the outbox", "serial", c.Serial,
			"user", c.Username, "by", r.By, "ticket", r.Ticket, "err", err)
		s.queueUnrecorded(ctx, &pendingRevocation{actor: actor, action: action, cert: c, rev: r, details: details, info: RequestInfoFrom(ctx)})
		return &Error{Code: EUnavailable, Message: "error.revoke_unrecorded", Err: err}
	}
	s.log.InfoContext(ctx, "certificate revoked", "serial", c.Serial, "user", c.Username, "by", r.By, "reason", r.Reason, "ticket", r.Ticket)
	return nil
}

// UserResult is a helpdesk search hit.
type UserResult struct {
	Username string
	Active   int
	Total    int
	// Serial is set when the search was for a certificate: the one found.
	Serial string
}

var prefixPattern = regexp.MustCompile(`^[a-z0-9._-]{0,64}$`)

// looksLikeSerial tells a serial search from a name prefix: a serial has
// separators between its bytes or, written without them, at least 8 bytes
// (16 hex digits) — longer than any name prefix an agent types.
func looksLikeSerial(q string) bool {
	if strings.Contains(q, ":") {
		return true
	}
	hex := 0
	for _, r := range q {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'f':
			hex++
		case r == '-' || r == ' ':
		default:
			return false
		}
	}
	return hex >= 16
}

// SearchUsers finds users by what an agent has at hand: a name prefix
// ("ali"), an email address ("alice@example.com": that user), or a
// certificate serial in any common form (its owner). Name matches come from
// the inventory and from Vault, so users who never enrolled are found too.
func (s *Service) SearchUsers(ctx context.Context, actor *Identity, q string) ([]UserResult, error) {
	if !actor.Has(RoleHelpdesk) {
		return nil, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	if err := CheckText("q", q, MaxSearchLen); err != nil {
		return nil, err
	}
	q = strings.ToLower(strings.TrimSpace(q))
	if strings.Contains(q, "@") {
		if len(q) > 254 {
			return nil, Invalid("q", "error.search_invalid")
		}
		// The user an address names as Vault matches names (a
		// vault_only certificate's CN such as "Alice@EXAMPLE.com"
		// pasted here finds alice, whose it is): userOfAddress.
		local := userOfAddress(q, s.opts.EmailDomain)
		if local == "" {
			return nil, nil // not an address of this portal's users
		}
		found, err := s.searchNames(ctx, local)
		if err != nil {
			return nil, err
		}
		for _, u := range found {
			if u.Username == local {
				return []UserResult{u}, nil
			}
		}
		return nil, nil
	}
	var out []UserResult
	if looksLikeSerial(q) {
		serial, err := NormalizeSerial(q)
		if err == nil {
			c, err := s.store.GetCertificate(ctx, serial)
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				return nil, storeUnavailable(err)
			default:
				out = append(out, UserResult{Username: c.Username, Serial: c.Serial})
			}
		}
		if !prefixPattern.MatchString(q) {
			if err != nil {
				return nil, err
			}
			return out, nil
		}
	}
	if !prefixPattern.MatchString(q) {
		return nil, Invalid("q", "error.search_invalid")
	}
	found, err := s.searchNames(ctx, q)
	if err != nil {
		return nil, err
	}
	return append(out, found...), nil
}

// searchNames finds users whose name starts with prefix: those in the
// inventory and those Vault knows that never enrolled.
func (s *Service) searchNames(ctx context.Context, prefix string) ([]UserResult, error) {
	found, err := s.store.SearchUsers(ctx, prefix, s.now(), 100)
	if err != nil {
		return nil, storeUnavailable(err)
	}
	byName := map[string]UserResult{}
	for _, u := range found {
		byName[u.Username] = UserResult{Username: u.Username, Active: u.Active, Total: u.Total}
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

// UserCertificates is the helpdesk view of a user's certificates. known is
// false when Vault has no such user (any more); a name Vault does not know
// and the inventory never saw is ENotFound, so a typo does not read as "a
// user without certificates". When Vault cannot be asked, known stays true:
// the page then shows what the inventory has without claiming anything.
func (s *Service) UserCertificates(ctx context.Context, actor *Identity, username string) ([]CertificateView, bool, error) {
	if !actor.Has(RoleHelpdesk) {
		return nil, false, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	if err := CheckText("username", username, MaxUsernameLen); err != nil {
		return nil, false, err
	}
	if !usernamePattern.MatchString(username) {
		return nil, false, &Error{Code: ENotFound, Message: "error.user_not_found"}
	}
	certs, err := s.Certificates(ctx, username)
	if err != nil {
		return nil, false, err
	}
	known := true
	if users, err := s.service.ListUsers(ctx, s.opts.UserpassMount); err != nil {
		s.log.WarnContext(ctx, "helpdesk user page: Vault user list unavailable", "err", err)
	} else {
		known = slices.Contains(users, username)
	}
	if !known && len(certs) == 0 {
		return nil, false, &Error{Code: ENotFound, Message: "error.user_not_found"}
	}
	return certs, known, nil
}

// HelpdeskCertificate returns any user's certificate, for the helpdesk's
// confirmation pages.
func (s *Service) HelpdeskCertificate(ctx context.Context, actor *Identity, serial string) (CertificateView, error) {
	if !actor.Has(RoleHelpdesk) {
		return CertificateView{}, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	serial, err := certificateSerial(serial)
	if err != nil {
		return CertificateView{}, err
	}
	c, err := s.store.GetCertificate(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return CertificateView{}, &Error{Code: ENotFound, Message: "error.certificate_not_found"}
	}
	if err != nil {
		return CertificateView{}, storeUnavailable(err)
	}
	return s.view(c), nil
}

// HelpdeskRevoke revokes any user's certificate; reason and ticket are required
// so that every helpdesk action can be traced to a request.
func (s *Service) HelpdeskRevoke(ctx context.Context, actor *Identity, serial, reason, ticket string, reissue bool) (*store.Certificate, error) {
	if !actor.Has(RoleHelpdesk) {
		return nil, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	serial, err := certificateSerial(serial)
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
		return nil, storeUnavailable(err)
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
// helpdesk action can be traced to a request, and short plain text that
// reads as what it is (auditors look tickets up by what they see): NFC, at
// most MaxTicketLen characters, and no control, invisible or stacked
// characters (the label's rules, textFaultOf). Returned trimmed and
// normalised, as recorded.
func validTicket(ticket string) (string, error) {
	invalid := Invalid("ticket", "error.ticket_invalid")
	if len(ticket) > 4*MaxTicketLen || !utf8.ValidString(ticket) {
		return "", invalid
	}
	ticket = norm.NFC.String(strings.TrimSpace(ticket))
	if ticket == "" || utf8.RuneCountInString(ticket) > MaxTicketLen || strings.ContainsAny(ticket, "<>\"") {
		return "", invalid
	}
	switch textFaultOf(ticket) {
	case faultControl:
		return "", invalid
	case faultInvisible:
		return "", Invalid("ticket", "error.ticket_invisible")
	case faultMarks:
		return "", Invalid("ticket", "error.ticket_marks")
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
	if s.DeviceKeys() == DeviceKeysRequired {
		// Issuing on behalf makes the key on the server; the operator
		// wants keys made on users' devices only.
		return nil, &Error{Code: EForbidden, Message: "error.device_key_required"}
	}
	if err := CheckText("username", username, MaxUsernameLen); err != nil {
		return nil, err
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
	label, _ := ValidLabel(req.Label) // checked by Validate
	why, policy, err := s.OnBehalfRefusal(ctx, username)
	if err != nil {
		return nil, err
	}
	if why != "" {
		details := map[string]string{"ticket": ticket, "reason": why}
		if policy != "" {
			details["policy"] = policy
		}
		if err := s.record(ctx, s.newEvent(ctx, actor.Username, username, audit.ActionIssueOnBehalf, audit.OutcomeDenied, "", details)); err != nil {
			return nil, err
		}
		s.log.WarnContext(ctx, "issue on behalf refused: not an employee", "user", username, "by", actor.Username, "reason", why)
		return nil, &Error{Code: EForbidden, Message: OnBehalfRefusalMessage(why), Err: errors.New(why)}
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	reservation, err := s.reserve(ctx, username, "", "error.onbehalf_cap")
	if err != nil {
		return nil, err
	}
	return s.issue(ctx, issuance{
		token: actor.Token, role: s.opts.OnBehalfRole, actor: actor.Username, username: username,
		action: audit.ActionIssueOnBehalf, details: map[string]string{"ticket": ticket},
		ttl: ttl, enc: enc, password: req.Password, reservation: reservation, label: label,
	})
}

// OnBehalfRefusal says why the helpdesk may not issue on username's
// behalf, or "" when it may, and the policy that decided it if one did.
// Issuing on behalf is for employees: a userpass user whose own
// token_policies hold the portal's user policy and whose every grant —
// token_policies, the identity entity's own policies and those of every
// identity group it is in, read with the portal's identity — is only that
// and Vault's default; and whose entity is not disabled (a suspended
// person, whom the offboarding sweep treats as a leaver). A certificate in
// a Vault operator's, a staff member's (helpdesk, auditor) or a service
// account's name would hand a helpdesk agent an identity that is not
// theirs to give out — staff and operators get their own by signing in —
// and one for a user without the user policy in token_policies is revoked
// by the next offboarding sweep (which checks the same list). A user Vault
// does not know is ENotFound; not being able to ask is EUnavailable (fail
// closed).
func (s *Service) OnBehalfRefusal(ctx context.Context, username string) (why, policy string, err error) {
	if s.offboardVault == nil {
		return "", "", vaultUnavailable(errors.New("the portal's identity cannot read userpass users"))
	}
	u, err := s.offboardVault.ReadUser(ctx, s.opts.UserpassMount, username)
	if err != nil {
		return "", "", vaultUnavailable(err)
	}
	if u == nil {
		return "", "", &Error{Code: ENotFound, Message: "error.user_not_found"}
	}
	if why, policy := s.policyRefusal(u.Policies); why != "" {
		return why, policy, nil
	}
	if !slices.Contains(u.Policies, s.opts.UserPolicy) {
		return "no portal policy", "", nil
	}
	g, err := s.userIdentity(ctx, username)
	if err != nil {
		return "", "", identityError(err)
	}
	if g != nil {
		if g.Disabled {
			return ReasonEntityDisabled, "", nil
		}
		if why, policy := s.policyRefusal(g.Policies); why != "" {
			return why, policy, nil
		}
	}
	return "", "", nil
}

// OnBehalfRefusalMessage is the catalog key that tells the helpdesk why
// OnBehalfRefusal said no, and what helps: staff sign in for their own, a
// suspended account gets nothing, and an account that is not only an
// employee's in Vault — no portal access, or more than it — needs a Vault
// operator. Those two are one message: the helpdesk page must not become
// a list of who holds Vault power (the reason itself goes to the trail).
func OnBehalfRefusalMessage(why string) string {
	switch why {
	case ReasonPortalStaff:
		return "error.onbehalf_staff"
	case ReasonEntityDisabled:
		return "error.onbehalf_suspended"
	}
	return "error.onbehalf_vault_account"
}

// IsOnBehalfRefusal reports whether message is one of OnBehalfRefusalMessage's.
func IsOnBehalfRefusal(message string) bool {
	switch message {
	case "error.onbehalf_staff", "error.onbehalf_suspended", "error.onbehalf_vault_account":
		return true
	}
	return false
}

// ReasonEntityDisabled is the recorded reason for refusing a helpdesk
// action for a user whose identity entity an operator disabled.
const ReasonEntityDisabled = "identity entity disabled"

// ReasonPortalStaff is the recorded reason for refusing to issue on behalf
// of a helpdesk member or an auditor.
const ReasonPortalStaff = "portal staff get their own certificates"

// Now is the service's clock (tests may move it).
func (s *Service) Now() time.Time { return s.now() }
