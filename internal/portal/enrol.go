package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/vault"
)

// EnrolmentLinkTTL is how long a one-time enrolment link can be used.
const EnrolmentLinkTTL = 24 * time.Hour

// DefaultMFAEnforcement is the login enforcement setup --mfa totp writes;
// the portal reads its method and userpass accessor from it.
const DefaultMFAEnforcement = "certportal"

// EnrolmentLink is a one-time link, shown once to the helpdesk agent who
// made it; the store keeps only Token's hash.
type EnrolmentLink struct {
	Token     string
	Username  string
	ExpiresAt time.Time
}

// MFAEnrolVault is what enrolment needs from the portal's own identity:
// it reads the enforcement, finds a user's entity and generates or
// destroys their TOTP secret — never reads one.
type MFAEnrolVault interface {
	ReadMFAEnforcement(ctx context.Context, name string) (*vault.MFAEnforcement, error)
	LookupEntity(ctx context.Context, accessor, username string) (string, error)
	GenerateTOTP(ctx context.Context, methodID, entityID string) (*vault.TOTPKey, error)
	DestroyTOTP(ctx context.Context, methodID, entityID string) error
}

func hashEnrolToken(token string) string {
	h := sha256.Sum256([]byte("certportal-enrolment:" + token))
	return hex.EncodeToString(h[:])
}

func (s *Service) enforcement(ctx context.Context) (*vault.MFAEnforcement, error) {
	if s.mfaVault == nil {
		return nil, &Error{Code: EInvalid, Message: "error.mfa_off"}
	}
	e, err := s.mfaVault.ReadMFAEnforcement(ctx, s.opts.MFAEnforcement)
	switch {
	case errors.Is(err, vault.ErrNotFound), errors.Is(err, vault.ErrPermissionDenied):
		// Denied: setup grants the portal this read only with --mfa totp.
		return nil, &Error{Code: EInvalid, Message: "error.mfa_off", Err: err}
	case err != nil:
		return nil, vaultUnavailable(err)
	}
	return e, nil
}

// MFAEnrolmentOn reports whether helpdesk enrolment can work: the portal's
// identity can enrol and Vault holds the login enforcement that makes a
// login two-step. Vault unreachable counts as on: the form stays, and
// sending it reports the outage.
func (s *Service) MFAEnrolmentOn(ctx context.Context) bool {
	_, err := s.enforcement(ctx)
	var pe *Error
	return !(errors.As(err, &pe) && pe.Code == EInvalid)
}

// EnrolmentRefusal is the catalog key of why StartEnrolment would refuse
// actor's link or reset for username, or "" when it would not (or cannot
// tell yet: the post then reports what went wrong). The helpdesk page shows
// it instead of a form bound to be refused.
func (s *Service) EnrolmentRefusal(ctx context.Context, actor *Identity, username string) string {
	_, message, err := s.enrolmentRefusal(ctx, actor, NormalizeUsername(username))
	if err != nil {
		return ""
	}
	return message
}

// enrolmentRefusal decides whether the helpdesk may enrol or reset
// username's second factor: why (the recorded reason) and message (the
// catalog key) when not, both "" when it may. Vault's enforcement covers
// every user of the mount, Vault's own operators too: the helpdesk manages
// the second factor of portal users only, or an agent could destroy an
// operator's and, with the password, enrol a phone of their own for Vault
// itself. Nor an agent's own, or another staff member's: with one stolen
// session and the password, an agent's own reset would give whoever holds
// them a phone of their own as the agent's second factor for good; staff
// factors are the operators' to reset (docs/mfa.md).
func (s *Service) enrolmentRefusal(ctx context.Context, actor *Identity, username string) (why, message string, err error) {
	if username == actor.Username {
		return ReasonOwnFactor, "error.mfa_self", nil
	}
	managed, staff, why, err := s.mfaManaged(ctx, username, true)
	switch {
	case err != nil:
		return "", "", err
	case !managed:
		return why, "error.mfa_not_portal_user", nil
	case staff:
		return ReasonStaffFactor, "error.mfa_staff", nil
	}
	return "", "", nil
}

// ReasonOwnFactor and ReasonStaffFactor are the recorded reasons for
// refusing a helpdesk enrolment link or reset of the agent's own second
// factor and of another staff member's.
const (
	ReasonOwnFactor   = "the agent's own second factor"
	ReasonStaffFactor = "a portal staff member's second factor"
)

// StartEnrolment lets helpdesk staff enrol username in TOTP: with reset,
// the user's current secret is destroyed first (a lost phone). The result
// is a one-time link valid for EnrolmentLinkTTL that replaces any earlier
// one; the agent passes it on out of band. Ticket required; recorded.
func (s *Service) StartEnrolment(ctx context.Context, actor *Identity, username, ticket string, reset bool) (*EnrolmentLink, error) {
	if !actor.Has(RoleHelpdesk) {
		return nil, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	username = NormalizeUsername(username)
	if !usernamePattern.MatchString(username) {
		return nil, Invalid("username", "error.bad_request")
	}
	ticket, err := validTicket(ticket)
	if err != nil {
		return nil, err
	}
	enf, err := s.enforcement(ctx)
	if err != nil {
		return nil, err
	}
	var pe *Error
	switch why, message, err := s.enrolmentRefusal(ctx, actor, username); {
	case errors.As(err, &pe):
		return nil, err
	case err != nil:
		return nil, vaultUnavailable(err)
	case why != "":
		action := audit.ActionMFAEnrolLink
		if reset {
			action = audit.ActionMFAReset
		}
		if err := s.record(ctx, s.newEvent(ctx, actor.Username, username, action, audit.OutcomeDenied, "",
			map[string]string{"ticket": ticket, "reason": why})); err != nil {
			return nil, err
		}
		s.log.WarnContext(ctx, "mfa enrolment refused", "user", username, "by", actor.Username, "reason", why)
		return nil, &Error{Code: EForbidden, Message: message, Err: errors.New(why)}
	}
	if reset {
		// Recorded before the secret is destroyed: no reset without its
		// record (the trail refusing means the factor stays).
		if err := s.record(ctx, s.newEvent(ctx, actor.Username, username, audit.ActionMFAReset, audit.OutcomeIntent, "",
			map[string]string{"ticket": ticket})); err != nil {
			return nil, err
		}
		entity, err := s.mfaVault.LookupEntity(ctx, enf.Accessor, username)
		switch {
		case errors.Is(err, vault.ErrNotFound):
			// Never logged in: no secret to destroy.
		case err != nil:
			return nil, vaultUnavailable(err)
		default:
			if err := s.mfaVault.DestroyTOTP(ctx, enf.MethodID, entity); err != nil {
				return nil, vaultUnavailable(err)
			}
		}
		if err := s.record(ctx, s.newEvent(ctx, actor.Username, username, audit.ActionMFAReset, audit.OutcomeSuccess, "",
			map[string]string{"ticket": ticket})); err != nil {
			return nil, err
		}
		s.log.InfoContext(ctx, "mfa secret destroyed", "user", username, "by", actor.Username, "ticket", ticket)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, &Error{Code: EInternal, Message: "error.internal", Err: err}
	}
	link := &EnrolmentLink{Token: base64.RawURLEncoding.EncodeToString(b), Username: username, ExpiresAt: s.now().Add(EnrolmentLinkTTL)}
	// Recorded before the link exists: a link nobody can trace must not work.
	if err := s.record(ctx, s.newEvent(ctx, actor.Username, username, audit.ActionMFAEnrolLink, audit.OutcomeSuccess, "",
		map[string]string{"ticket": ticket, "expires": link.ExpiresAt.UTC().Format(time.RFC3339)})); err != nil {
		return nil, err
	}
	if err := s.store.CreateEnrolment(ctx, &store.Enrolment{TokenHash: hashEnrolToken(link.Token), Username: username,
		CreatedBy: actor.Username, Ticket: ticket, CreatedAt: s.now(), ExpiresAt: link.ExpiresAt}); err != nil {
		return nil, storeUnavailable(err)
	}
	return link, nil
}

// BeginEnrolment is the user's side of a link: their password (a normal
// login, which Vault answers with an MFA requirement), then the link is
// spent and Vault generates their secret. The key goes to the page once;
// the pending login is finished with a code from it (CompleteLogin).
func (s *Service) BeginEnrolment(ctx context.Context, token, username, password string) (*PendingLogin, *vault.TOTPKey, error) {
	if s.mfaVault == nil {
		return nil, nil, &Error{Code: EInvalid, Message: "error.mfa_off"}
	}
	invalid := &Error{Code: EUnauthorized, Message: "error.enrol_link_invalid"}
	if token == "" || len(token) > 100 {
		return nil, nil, invalid
	}
	// The login first: it is what the login limits guard, so an
	// anonymous stream of posts is refused before it costs Vault any
	// read. Without trust on first use: the link is the way this user
	// enrols.
	id, pending, err := s.login(ctx, username, password, "", false)
	if err != nil {
		return nil, nil, err
	}
	if id != nil {
		// Vault did not ask for a code: MFA is not enforced for this user.
		_ = s.vault.RevokeSelf(ctx, id.Token)
		return nil, nil, &Error{Code: EInvalid, Message: "error.mfa_off"}
	}
	enf, err := s.enforcement(ctx)
	if err != nil {
		return nil, nil, err
	}
	e, err := s.store.UseEnrolment(ctx, hashEnrolToken(token), pending.Username, s.now())
	if errors.Is(err, store.ErrNotFound) {
		if rerr := s.record(ctx, s.newEvent(ctx, pending.Username, pending.Username, audit.ActionMFAEnrol, audit.OutcomeFailure, "",
			map[string]string{"reason": "link unknown, used, expired or another user's"})); rerr != nil {
			return nil, nil, rerr
		}
		return nil, nil, invalid
	}
	if err != nil {
		return nil, nil, storeUnavailable(err)
	}
	// The login just made the entity if it was missing.
	entity, err := s.mfaVault.LookupEntity(ctx, enf.Accessor, pending.Username)
	if err != nil {
		return nil, nil, vaultUnavailable(err)
	}
	key, err := s.mfaVault.GenerateTOTP(ctx, enf.MethodID, entity)
	if errors.Is(err, vault.ErrMFAAlreadyEnrolled) {
		// The link is spent: the trail says by whom and why, or it would
		// vanish without a record.
		if rerr := s.record(ctx, s.newEvent(ctx, pending.Username, pending.Username, audit.ActionMFAEnrol, audit.OutcomeFailure, "",
			map[string]string{"reason": "already enrolled; link spent", "ticket": e.Ticket, "link_by": e.CreatedBy})); rerr != nil {
			return nil, nil, rerr
		}
		return nil, nil, &Error{Code: EInvalid, Message: "error.mfa_already_enrolled", Err: err}
	}
	if err != nil {
		return nil, nil, vaultUnavailable(err)
	}
	if err := s.record(ctx, s.newEvent(ctx, pending.Username, pending.Username, audit.ActionMFAEnrol, audit.OutcomeSuccess, "",
		map[string]string{"ticket": e.Ticket, "link_by": e.CreatedBy})); err != nil {
		// Vault has the secret; without a record the user is not shown it.
		_ = s.mfaVault.DestroyTOTP(ctx, enf.MethodID, entity)
		return nil, nil, err
	}
	return pending, key, nil
}

// enrolOnFirstUse is trust on first use (CERTPORTAL_MFA_TOFU): the password
// of an enforced user was right and Vault asks for a code; if the user has
// no secret yet, the portal's identity generates one now and the user sees
// it once, on the page that asks for the first code. A user who has one
// gets nil (the usual code page). When the portal's identity cannot tell
// (Vault unreachable, enrolment not allowed to it), nil too: the login
// goes on as without the switch, and a user without a secret is told to
// ask the helpdesk — never let in without a second factor.
//
// Weaker than the helpdesk's link: whoever has a not-yet-enrolled user's
// password enrols their own phone (docs/mfa.md).
func (s *Service) enrolOnFirstUse(bg, ctx context.Context, username string) (*vault.TOTPKey, error) {
	// Only a first use: once the helpdesk has made a link for this user
	// (or reset a lost phone, which makes one) or they were enrolled
	// before, the link is the way in. Otherwise whoever holds the
	// password logs in first after a reset and enrols their own phone,
	// and the real user's link is worth nothing.
	if handled, err := s.mfaHandledBefore(bg, username); err != nil || handled {
		if err != nil {
			s.log.WarnContext(ctx, "trust on first use: cannot read the user's enrolment history", "user", username, "err", err)
		}
		return nil, nil
	}
	// The enforcement covers every userpass user, and Vault names a
	// login's policies only after the code: without this check the portal
	// would hand a Vault operator's second factor (one that opens Vault
	// itself) to whoever had their password. Portal policies granted only
	// through identity groups are not seen here: those users ask the
	// helpdesk (fail closed).
	if !s.portalUserInVault(bg, ctx, username) {
		return nil, nil
	}
	enf, err := s.enforcement(bg)
	if err != nil {
		s.log.WarnContext(ctx, "trust on first use: cannot read the mfa enforcement", "user", username, "err", err)
		return nil, nil
	}
	// The login that just asked for a code made the entity if it was missing.
	entity, err := s.mfaVault.LookupEntity(bg, enf.Accessor, username)
	if err != nil {
		s.log.WarnContext(ctx, "trust on first use: cannot find the user's entity", "user", username, "err", err)
		return nil, nil
	}
	key, err := s.mfaVault.GenerateTOTP(bg, enf.MethodID, entity)
	switch {
	case errors.Is(err, vault.ErrMFAAlreadyEnrolled):
		return nil, nil
	case err != nil:
		s.log.WarnContext(ctx, "trust on first use: cannot generate a secret", "user", username, "err", err)
		return nil, nil
	}
	if err := s.record(bg, s.newEvent(ctx, username, username, audit.ActionMFAEnrol, audit.OutcomeSuccess, "",
		map[string]string{"via": "first login (trust on first use)"})); err != nil {
		// No record, no secret: the user is not shown one nobody can trace.
		if derr := s.mfaVault.DestroyTOTP(bg, enf.MethodID, entity); derr != nil {
			s.log.ErrorContext(ctx, "trust on first use: destroy an unrecorded secret", "user", username, "err", derr)
		}
		return nil, err
	}
	s.log.InfoContext(ctx, "mfa secret generated at first login (trust on first use)", "user", username)
	return key, nil
}

// mfaHandledBefore reports whether the trail shows an enrolment link or a
// reset for username, or a completed enrolment: trust on first use is
// then no longer a first use.
func (s *Service) mfaHandledBefore(ctx context.Context, username string) (bool, error) {
	for _, f := range []store.AuditFilter{
		{Subject: username, Action: audit.ActionMFAEnrolLink, Limit: 1},
		{Subject: username, Action: audit.ActionMFAReset, Limit: 1},
		{Subject: username, Action: audit.ActionMFAEnrol, Outcome: audit.OutcomeSuccess, Limit: 1},
	} {
		evs, err := s.store.QueryAudit(ctx, f)
		if err != nil {
			return false, err
		}
		if len(evs) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// portalUserInVault reports whether the portal may enrol username's
// second factor on first use (mfaManaged).
func (s *Service) portalUserInVault(bg, ctx context.Context, username string) bool {
	managed, _, why, err := s.mfaManaged(bg, username, false)
	if err != nil {
		s.log.WarnContext(ctx, "trust on first use: cannot read the userpass user", "user", username, "err", err)
		return false
	}
	if !managed {
		s.log.InfoContext(ctx, "trust on first use: not for this user", "user", username, "reason", why)
	}
	return managed
}

// mfaManaged reports whether username's second factor is the portal's to
// manage (helpdesk resets and links, trust on first use): everything Vault
// grants the userpass user — its own token_policies and the policies of
// its identity entity and groups, read with the portal's identity — is
// portal policies and Vault's default only, and there is at least one
// portal policy among them — or, with portalLogin (the helpdesk), none at
// all but the trail shows a completed portal login of theirs. A user with
// any other policy has a second factor that guards more than the portal
// (a Vault operator, an admin who also holds a certificate): Vault's
// operators enrol those. staff says the user holds a portal staff policy
// (helpdesk, auditor). why says why not; err is a failure to answer (fail
// closed: the caller refuses).
func (s *Service) mfaManaged(ctx context.Context, username string, portalLogin bool) (managed, staff bool, why string, err error) {
	if s.offboardVault == nil {
		return false, false, "the portal's identity cannot read userpass users", nil
	}
	u, err := s.offboardVault.ReadUser(ctx, s.opts.UserpassMount, username)
	if err != nil {
		return false, false, "", err
	}
	if u == nil {
		return false, false, "no such userpass user", nil
	}
	g, err := s.userIdentity(ctx, username)
	if err != nil {
		return false, false, "", identityError(err)
	}
	all := u.Policies
	if g != nil {
		all = append(append([]string(nil), u.Policies...), g.Policies...)
	}
	beyond, staffPolicy := s.classifyPolicies(all)
	if beyond != "" {
		return false, staffPolicy != "", ReasonExtraPolicies, nil
	}
	staff = staffPolicy != ""
	if len(s.roles(all)) > 0 {
		return true, staff, "", nil
	}
	if portalLogin {
		evs, err := s.store.QueryAudit(ctx, store.AuditFilter{Subject: username, Action: audit.ActionLogin, Outcome: audit.OutcomeSuccess, Limit: 1})
		if err != nil {
			return false, false, "", storeUnavailable(err)
		}
		if len(evs) > 0 {
			return true, staff, "", nil
		}
	}
	return false, false, "no portal policy", nil
}
