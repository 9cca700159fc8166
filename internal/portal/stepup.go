package portal

import (
	"context"
	"errors"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/vault"
)

// DefaultMFAStepUp is how old the last proof may be for a risky action.
const DefaultMFAStepUp = 15 * time.Minute

// StepUpDue reports whether id must prove themselves to Vault again before
// a download, a revocation or a helpdesk action: their last proof (the
// login, or the last step-up) is CERTPORTAL_MFA_STEP_UP old or older. A
// session that does not know when (AuthAt zero) is due: fail closed.
func (s *Service) StepUpDue(id *Identity) bool {
	if id == nil || id.AuthAt.IsZero() {
		return true
	}
	return s.now().Sub(id.AuthAt) >= s.opts.MFAStepUp
}

// StepUp re-authenticates id's user through Vault, never with a check of
// its own: a fresh userpass login with password and, when Vault answers
// with an MFA requirement, sys/mfa/validate with code. What is being done
// ("POST /certificates") goes to the trail. The result is id with AuthAt
// now (and MFA when a code was checked), for the caller to keep in the
// session.
//
// The token this login yields is revoked at once rather than swapped into
// the session: the step-up is a proof, not a new login, so the session
// keeps its token, its expiry (a step-up never stretches a session past the
// absolute timeout set at login) and its recheck state.
//
// device is the browser's device token, as for LoginDevice: the owner's
// own browser is not held at a stranger's per-username lockout.
//
// Failures count as failed logins do (per address and per username) and
// are recorded as session.step_up failures. A wrong password and a wrong
// code get one message, error.stepup_failed; only a right password with
// no code where Vault wants one gets error.stepup_code_needed (the login
// page tells as much: a right password leads to the code page).
func (s *Service) StepUp(ctx context.Context, id *Identity, password, code, device, what string) (*Identity, error) {
	if id == nil {
		return nil, &Error{Code: EUnauthorized, Message: "error.session_expired"}
	}
	ip := RequestInfoFrom(ctx).ClientIP
	// Like a login, it runs to the end once Vault is asked.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.loginTimeout())
	defer cancel()
	if v := s.throttle.attempt(ip, s.now()); !v.allowed {
		return nil, &Error{Code: ETooMany, Message: "error.login_throttled", RetryAfter: v.retryAfter}
	}
	failed := func(reason string, cause error, e *Error) error {
		s.log.InfoContext(ctx, "step-up refused", "user", id.Username, "reason", reason, "for", what, "client_ip", ip)
		if err := s.record(bg, s.newEvent(ctx, id.Username, id.Username, audit.ActionStepUp, audit.OutcomeFailure, "",
			map[string]string{"reason": reason, "for": what})); err != nil {
			return err
		}
		e.Err = cause
		return e
	}
	refused := func() *Error { return &Error{Code: EUnauthorized, Message: "error.stepup_failed"} }
	if password == "" || len(password) > 1024 {
		// Nothing was tried: not counted, not recorded.
		s.throttle.refund(ip, s.now())
		return nil, &Error{Code: EUnauthorized, Message: "error.stepup_needed"}
	}
	userKey, deviceKey, err := s.takeUserAttempt(bg, id.Username, device)
	if err != nil {
		s.throttle.refund(ip, s.now())
		return nil, err
	}
	unavailable := func(err error) error {
		s.throttle.refund(ip, s.now())
		if !errors.Is(err, vault.ErrNoAnswer) {
			// Never checked by Vault. One it answered too late may have
			// been (and counted towards its lockout): that stays counted,
			// as at the login.
			s.refundUserAttempt(bg, userKey)
			s.refundUserAttempt(bg, deviceKey)
		}
		return &Error{Code: EUnavailable, Message: "error.vault_unavailable_login", Err: err}
	}
	l, err := s.vault.LoginUserpass(bg, s.opts.UserpassMount, id.Username, password)
	switch {
	case errors.Is(err, vault.ErrInvalidCredentials):
		return nil, failed("invalid credentials", err, refused())
	case err != nil:
		return nil, unavailable(err)
	}
	mfa := false
	if l.MFARequestID != "" {
		// Vault keeps this pending login 300 s and forgets it on its own;
		// a retry starts with a fresh login, so no request id is kept.
		c, ok := NormalizeCode(code)
		switch {
		case code == "":
			// The attempt stays counted until a complete step-up clears
			// it, as after a right password at the login.
			return nil, failed("code missing", nil, &Error{Code: EUnauthorized, Message: "error.stepup_code_needed"})
		case !ok:
			return nil, failed("malformed code", nil, refused())
		}
		l, err = s.vault.ValidateMFA(bg, l.MFARequestID, l.MFAMethodIDs, c)
		switch {
		case errors.Is(err, vault.ErrInvalidCredentials):
			return nil, failed("code not accepted", err, refused())
		case errors.Is(err, vault.ErrMFANotEnrolled):
			s.throttle.refund(ip, s.now()) // no code could have passed
			return nil, failed("not enrolled", err, &Error{Code: EForbidden, Message: "error.mfa_not_enrolled"})
		case err != nil:
			// ErrMFAExpired cannot be the user's doing a moment after the
			// login: Vault misbehaves.
			return nil, unavailable(err)
		}
		mfa = true
	}
	// The proof is complete: give the token back before anything else.
	if rerr := s.vault.RevokeSelf(bg, l.Token); rerr != nil {
		// It expires with its TTL (never longer than a session); the
		// step-up stands, since the user did prove themselves.
		s.log.ErrorContext(ctx, "revoke step-up token", "user", id.Username, "err", rerr)
	}
	if len(s.roles(l.Policies)) == 0 {
		// Vault took the portal's policies away since the login; the
		// recheck ends the session, the step-up is refused now.
		return nil, failed("no portal policy", nil, refused())
	}
	s.throttle.refund(ip, s.now())
	s.clearUserAttempts(bg, userKey)
	s.clearUserAttempts(bg, deviceKey)
	how := "password"
	if mfa {
		how = "totp"
	}
	if err := s.record(bg, s.newEvent(ctx, id.Username, id.Username, audit.ActionStepUp, audit.OutcomeSuccess, "",
		map[string]string{"for": what, "mfa": how})); err != nil {
		// No record, no step-up: the action it was for does not happen.
		return nil, err
	}
	next := *id
	next.Roles = append([]Role(nil), id.Roles...)
	next.AuthAt, next.MFA = s.now(), mfa
	return &next, nil
}
