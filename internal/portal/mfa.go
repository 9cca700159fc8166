package portal

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/vault"
)

// MFADigits is the length of a TOTP code (setup writes the method with six).
const MFADigits = 6

// DefaultMFAPending is how long Vault keeps a pending MFA login (its
// defaultMFAAuthResponseTTL); the portal never keeps one longer.
const DefaultMFAPending = 300 * time.Second

// PendingLogin is a login whose password Vault accepted and that waits for a
// TOTP code. It stays on the server, in the pre-login session that asked
// for it: RequestID is never sent to the browser, so a code can only
// complete the login of the session it was typed into.
type PendingLogin struct {
	Username  string
	RequestID string
	MethodIDs []string
	Started   time.Time
	// DeviceKey is the store key of the device count the password step
	// took ("" without a valid device token): cleared with the name's
	// once the code is accepted.
	DeviceKey string
	// NewKey is the TOTP secret trust on first use just generated for a
	// user who had none (CERTPORTAL_MFA_TOFU): shown once, on the page
	// that asks for the first code, and never kept in the session.
	NewKey *vault.TOTPKey
}

// pendingLogin records that Vault asks this user for a second factor.
func (s *Service) pendingLogin(ctx context.Context, username string, l *vault.Login, deviceKey string) (*PendingLogin, error) {
	if err := s.record(ctx, s.newEvent(ctx, "", username, audit.ActionLoginMFARequired, audit.OutcomeSuccess, "",
		map[string]string{"method": "totp"})); err != nil {
		// No record, no login: Vault forgets the pending login in 300 s.
		return nil, err
	}
	return &PendingLogin{Username: username, RequestID: l.MFARequestID, MethodIDs: l.MFAMethodIDs, Started: s.now(), DeviceKey: deviceKey}, nil
}

// NormalizeCode returns the code as Vault must see it: spaces (a user
// typing "123 456" as an app shows it) removed, and then nothing but
// exactly MFADigits digits. Anything else never reaches Vault, where
// padded codes once escaped the reuse and rate checks (CVE-2025-6015).
func NormalizeCode(code string) (string, bool) {
	c := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, code)
	if len(c) != MFADigits {
		return "", false
	}
	for _, r := range c {
		if r < '0' || r > '9' {
			return "", false
		}
	}
	return c, true
}

// PendingExpired reports whether Vault has surely forgotten p.
func (s *Service) PendingExpired(p *PendingLogin) bool {
	return s.now().Sub(p.Started) >= s.opts.MFAPending
}

// CompleteLogin finishes a pending login with a TOTP code. A refused code
// (wrong, reused, malformed, or Vault's per-user attempt limit) is
// EUnauthorized "error.mfa_code_rejected" and the pending login stays for
// a retry; a login past Vault's window is EUnauthorized "error.mfa_expired"
// and must start over; a user with no secret is EForbidden
// "error.mfa_not_enrolled". The caller drops the pending login unless the
// error is error.mfa_code_rejected.
func (s *Service) CompleteLogin(ctx context.Context, p *PendingLogin, code string) (*Identity, error) {
	rejected := &Error{Code: EUnauthorized, Message: "error.mfa_code_rejected"}
	fail := func(reason string, cause error, e *Error) error {
		if err := s.record(ctx, s.newEvent(ctx, "", p.Username, audit.ActionLoginMFAFailure, audit.OutcomeFailure, "",
			map[string]string{"reason": reason})); err != nil {
			return err
		}
		e.Err = cause
		return e
	}
	if s.PendingExpired(p) {
		return nil, fail("pending login expired", nil, &Error{Code: EUnauthorized, Message: "error.mfa_expired"})
	}
	ip := RequestInfoFrom(ctx).ClientIP
	v := s.throttle.attempt(ip, s.now())
	s.throttled(ctx, v)
	if !v.allowed {
		// The same limit as passwords: one address cannot try codes for
		// the sessions it holds faster than it could try passwords.
		return nil, &Error{Code: ETooMany, Message: "error.login_throttled", RetryAfter: v.retryAfter}
	}
	c, ok := NormalizeCode(code)
	if !ok {
		return nil, fail("malformed code", nil, rejected)
	}
	l, err := s.vault.ValidateMFA(ctx, p.RequestID, p.MethodIDs, c)
	switch {
	case errors.Is(err, vault.ErrInvalidCredentials):
		return nil, fail("code not accepted", err, rejected)
	case errors.Is(err, vault.ErrMFAExpired):
		return nil, fail("pending login unknown to vault", err, &Error{Code: EUnauthorized, Message: "error.mfa_expired"})
	case errors.Is(err, vault.ErrMFANotEnrolled):
		s.throttle.refund(ip, s.now()) // no code could have passed
		return nil, fail("not enrolled", err, &Error{Code: EForbidden, Message: "error.mfa_not_enrolled"})
	case err != nil:
		s.throttle.refund(ip, s.now())
		return nil, &Error{Code: EUnavailable, Message: "error.vault_unavailable_login", Err: err}
	}
	// The login is complete: the code's attempt is refunded and the
	// username's count cleared (finishLogin), as after a right password.
	key := ""
	if s.opts.LoginUserMaxFailures > 0 && s.opts.LoginUserWindow > 0 {
		key = s.nameHash("login-attempts", p.Username)
	}
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.loginTimeout())
	defer cancel()
	deviceKey := ""
	if strings.HasPrefix(p.DeviceKey, "device:") {
		deviceKey = p.DeviceKey // only ever a device count, whatever the session held
	}
	id, err := s.finishLogin(bg, ctx, p.Username, l, ip, []string{key, deviceKey}, deviceDetail(deviceKey, map[string]string{"mfa": "totp"}))
	if err != nil {
		return nil, err
	}
	id.AuthAt, id.MFA = s.now(), true
	return id, nil
}
