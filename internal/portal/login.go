package portal

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

// loginTimeout bounds a login once it is under way: it no longer ends when
// the client hangs up (see Login), so it needs an end of its own. A login
// makes up to two Vault calls in a row (the login, then a token revocation
// or the user list), each bounded by the Vault timeout, plus store writes.
func (s *Service) loginTimeout() time.Duration {
	vt := s.opts.VaultTimeout
	if vt <= 0 {
		vt = 10 * time.Second
	}
	return 2*vt + 10*time.Second
}

// NormalizeUsername is the form of a submitted username everything after
// the form works with: Vault's userpass lower-cases names too, so " Alice"
// and "alice" are one account, one throttle count and one trail subject.
func NormalizeUsername(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// nameHash is the keyed hash that stands for a name: the same name always
// gives the same hash (auditors can group repeated failures), but without
// the key a hash cannot be turned back into, or tested against, a guess.
func (s *Service) nameHash(purpose, name string) string {
	m := hmac.New(sha256.New, s.opts.NameKey)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(name))
	return hex.EncodeToString(m.Sum(nil))
}

// recordedName is how a login's claimed name appears in the trail and the
// log: by name when it is a user the portal knows — in the inventory or a
// Vault userpass user — so auditors find failures against real users;
// otherwise as a keyed hash, because an unknown name is often a password
// typed into the wrong field.
func (s *Service) recordedName(ctx context.Context, name string) string {
	if usernamePattern.MatchString(name) && s.knownUser(ctx, name) {
		return name
	}
	return "unknown:" + s.nameHash("recorded-name", name)[:16]
}

func (s *Service) knownUser(ctx context.Context, name string) bool {
	if cs, err := s.store.ListCertificates(ctx, store.CertificateFilter{Username: name, Limit: 1}); err == nil && len(cs) > 0 {
		return true
	}
	return s.users.has(ctx, s, name)
}

// userCache is the userpass mount's user list, read with the portal's own
// identity at most once a minute (only when a failed login needs it).
type userCache struct {
	refresh sync.Mutex // held while one caller reads the list from Vault
	mu      sync.Mutex
	users   map[string]bool
	at      time.Time
}

const userCacheTTL = time.Minute

func (c *userCache) has(ctx context.Context, s *Service, name string) bool {
	c.mu.Lock()
	fresh := c.users != nil && time.Since(c.at) < userCacheTTL
	known := c.users[name]
	c.mu.Unlock()
	if fresh || s.service == nil {
		return known
	}
	c.refresh.Lock()
	defer c.refresh.Unlock()
	c.mu.Lock()
	if c.users != nil && time.Since(c.at) < userCacheTTL {
		known = c.users[name] // another caller refreshed meanwhile
		c.mu.Unlock()
		return known
	}
	c.mu.Unlock()
	list, err := s.service.ListUsers(ctx, s.opts.UserpassMount)
	if err != nil {
		// Unknown is the safe direction: the name is recorded hashed.
		s.log.WarnContext(ctx, "list userpass users for the audit trail", "err", err)
		return known
	}
	m := make(map[string]bool, len(list))
	for _, u := range list {
		m[strings.ToLower(u)] = true
	}
	c.mu.Lock()
	c.users, c.at = m, time.Now()
	c.mu.Unlock()
	return m[name]
}

// takeUserAttempt counts an attempt against the submitted name, existing or
// not, in the store (shared between replicas on PostgreSQL). The limit sits
// below the userpass mount's lockout threshold (setup tunes Vault to match),
// so a stranger's failures make the portal refuse that name for a short
// while instead of Vault locking the account. It returns the name's key.
//
// A browser presenting a valid device token for the name (device.go) is
// not refused at the name's limit: its attempt counts first against the
// device (at most LoginDeviceMaxFailures per window; past that the browser
// is a stranger again until the device's window ends), then against the
// name with the limit raised by LoginDeviceMaxFailures. Every attempt that
// reaches Vault for a name is still in the one run of that name, which
// therefore never holds more than LoginUserMaxFailures +
// LoginDeviceMaxFailures: config keeps that below Vault's threshold (the
// portal's limit + 5, setup.UserLockout), so neither the owner's typos nor
// a stolen device token can get the account locked in Vault. The owner
// can still log in while a stranger holds the name at its limit. The
// device's key is returned too ("" when no device count was taken).
func (s *Service) takeUserAttempt(ctx context.Context, username, device string) (userKey, deviceKey string, err error) {
	if s.opts.LoginUserMaxFailures <= 0 || s.opts.LoginUserWindow <= 0 {
		return "", "", nil
	}
	now := s.now()
	s.sweepUserAttempts(ctx, now)
	limit := s.opts.LoginUserMaxFailures
	if nonce, ok := s.checkDevice(device, username, now); ok {
		dk := s.deviceAttemptKey(nonce)
		v, err := s.store.TakeLoginAttempt(ctx, dk, s.opts.LoginDeviceMaxFailures, s.opts.LoginUserWindow, now)
		if err != nil {
			return "", "", storeUnavailable(err)
		}
		if v.Allowed {
			deviceKey, limit = dk, limit+s.opts.LoginDeviceMaxFailures
		}
		// Refused: this browser has used its own failures up; it is
		// held to the name's limit like any other until its window ends.
	}
	key := s.nameHash("login-attempts", username)
	v, err := s.store.TakeLoginAttempt(ctx, key, limit, s.opts.LoginUserWindow, now)
	if err != nil {
		s.refundUserAttempt(ctx, deviceKey)
		return "", "", storeUnavailable(err)
	}
	if v.Allowed {
		return key, deviceKey, nil
	}
	s.refundUserAttempt(ctx, deviceKey) // not tried after all
	if v.FirstRefusal {
		if err := s.record(ctx, s.newEvent(ctx, "", s.recordedName(ctx, username), audit.ActionLogin, audit.OutcomeDenied, "",
			map[string]string{"reason": "too many failed logins for this username; further attempts are refused unrecorded until " + fmtTime(v.RetryAt)})); err != nil {
			return "", "", err
		}
	}
	wait := v.RetryAt.Sub(now)
	if wait < time.Second {
		wait = time.Second
	}
	return "", "", &Error{Code: ETooMany, Message: "error.login_throttled_user", RetryAfter: wait}
}

func (s *Service) refundUserAttempt(ctx context.Context, key string) {
	if key == "" {
		return
	}
	if err := s.store.RefundLoginAttempt(ctx, key); err != nil {
		s.log.WarnContext(ctx, "refund login attempt", "err", err)
	}
}

func (s *Service) clearUserAttempts(ctx context.Context, key string) {
	if key == "" {
		return
	}
	if err := s.store.ClearLoginAttempts(ctx, key); err != nil {
		s.log.WarnContext(ctx, "clear login attempts", "err", err)
	}
}

// sweepUserAttempts deletes runs that have ended, at most once a window, so
// that names tried once do not pile up in the table.
func (s *Service) sweepUserAttempts(ctx context.Context, now time.Time) {
	last := s.lastSweep.Load()
	if now.UnixMilli()-last < s.opts.LoginUserWindow.Milliseconds() || !s.lastSweep.CompareAndSwap(last, now.UnixMilli()) {
		return
	}
	if n, err := s.store.DeleteStaleLoginAttempts(ctx, now.Add(-s.opts.LoginUserWindow)); err != nil {
		s.log.WarnContext(ctx, "delete stale login attempts", "err", err)
	} else if n > 0 {
		s.log.DebugContext(ctx, "deleted stale login attempts", "count", n)
	}
}

// padFailure makes a failed login take at least LoginFailureFloor from
// start: Vault refuses a locked user in a few milliseconds and checks a
// password in tens, and the difference would tell which names exist. The
// wait holds no lock or connection, and ends early when the client has gone.
func (s *Service) padFailure(ctx context.Context, start time.Time, err error) {
	if s.opts.LoginFailureFloor <= 0 || ErrorCode(err) != EUnauthorized {
		return
	}
	wait := time.Until(start.Add(s.opts.LoginFailureFloor))
	if wait <= 0 {
		s.log.WarnContext(ctx, "a failed login took longer than CERTPORTAL_LOGIN_FAILURE_FLOOR: raise it, or its timing may tell which usernames exist",
			"took_ms", time.Since(start).Milliseconds(), "floor", s.opts.LoginFailureFloor.String())
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
