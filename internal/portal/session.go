package portal

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/vault"
)

// Why a session ended, as the trail's session.ended events say. The session
// layer names the other reasons (idle, absolute, replaced, shutdown).
const (
	EndTokenInvalid = "token revoked or expired in Vault"
	EndNoPolicy     = "no portal policy left"
)

// What became of a session's token when it ended (the event's "token").
const (
	tokenRevoked    = "revoked"
	tokenWasInvalid = "already invalid"
	tokenKept       = "not revoked: vault unavailable"
)

// CheckSession asks Vault about a session's token, with the token itself,
// and returns the identity as Vault's live policies make it now: roles are
// derived afresh, so a policy taken away in Vault takes the role away here.
// A token Vault no longer knows, or one left with no portal policy, ends the
// session: the error is EUnauthorized, the trail records why, and a token
// that is still valid is revoked. Vault unreachable is EUnavailable: the
// caller must not fall back on the roles it had.
//
// Concurrent checks of one token share one Vault call, and an answer
// younger than fresh is reused: requests of one session that loaded it
// before the last check was saved do not ask again. The time returned is
// when Vault was asked, for the caller to keep as the check's time.
func (s *Service) CheckSession(ctx context.Context, id *Identity, fresh time.Duration) (*Identity, time.Time, error) {
	key := sha256.Sum256([]byte(id.Token))
	return s.sessionChecks.do(string(key[:]), fresh, func() (*Identity, error) {
		// The result is shared with other requests of the session: one
		// client going away must not fail them all.
		return s.checkSession(context.WithoutCancel(ctx), id)
	})
}

func (s *Service) checkSession(ctx context.Context, id *Identity) (*Identity, error) {
	ended := &Error{Code: EUnauthorized, Message: "error.session_expired"}
	info, err := s.vault.LookupSelf(ctx, id.Token)
	switch {
	case errors.Is(err, vault.ErrPermissionDenied):
		ended.Err = err
		s.recordEnd(ctx, id.Username, EndTokenInvalid, tokenWasInvalid)
		return nil, ended
	case err != nil:
		return nil, &Error{Code: EUnavailable, Message: "error.session_unverified", Err: err}
	}
	roles := s.roles(info.Policies)
	if len(roles) == 0 {
		// The token is valid but no longer the portal's business: give it
		// back, so that the session's end is Vault's too.
		_ = s.EndSession(ctx, id.Username, id.Token, EndNoPolicy, true)
		return nil, ended
	}
	next := &Identity{Username: id.Username, Token: id.Token, Roles: roles, ExpiresAt: id.ExpiresAt, AuthAt: id.AuthAt, MFA: id.MFA}
	if !info.ExpiresAt.IsZero() {
		next.ExpiresAt = info.ExpiresAt
	}
	if !slices.Equal(roles, id.Roles) {
		details := map[string]string{"roles": joinRoles(roles), "was": joinRoles(id.Roles)}
		if err := s.record(ctx, s.newEvent(ctx, "certportal", id.Username, audit.ActionSessionRoles, audit.OutcomeSuccess, "", details)); err != nil {
			// The roles are Vault's fact whether or not the trail has
			// them; the next change is recorded again.
			s.log.ErrorContext(ctx, "audit write failed for a change of session roles", "user", id.Username, "err", err)
		}
		s.log.InfoContext(ctx, "session roles changed in Vault", "user", id.Username, "roles", details["roles"], "was", details["was"])
	}
	return next, nil
}

// EndSession revokes the Vault token of a session that ends other than by
// logout (idle or absolute timeout, replaced by a new login, swept, portal
// shutdown, no portal policy left) and records the end with its reason;
// the token itself is never recorded or logged. When Vault cannot be
// reached the error is EUnavailable; final says the session is deleted
// anyway, and then the orphaned token is recorded too. Otherwise nothing is
// recorded: the caller keeps the session and tries again later.
func (s *Service) EndSession(ctx context.Context, username, token, reason string, final bool) error {
	ctx = context.WithoutCancel(ctx)
	if err := s.vault.RevokeSelf(ctx, token); err != nil {
		if final {
			s.log.ErrorContext(ctx, "session ended but its Vault token was not revoked: it lives until its TTL",
				"user", username, "reason", reason, "err", err)
			s.recordEnd(ctx, username, reason, tokenKept)
		}
		return vaultUnavailable(err)
	}
	s.recordEnd(ctx, username, reason, tokenRevoked)
	s.log.InfoContext(ctx, "session ended", "user", username, "reason", reason)
	return nil
}

// recordEnd records a session's end. The session ends whether or not the
// trail takes the event: ending access is never the unsafe direction.
func (s *Service) recordEnd(ctx context.Context, username, reason, token string) {
	outcome := audit.OutcomeSuccess
	if token == tokenKept {
		outcome = audit.OutcomeFailure
	}
	e := s.newEvent(ctx, "certportal", username, audit.ActionSessionEnded, outcome, "", map[string]string{"reason": reason, "token": token})
	if err := s.record(ctx, e); err != nil {
		s.log.ErrorContext(ctx, "audit write failed for a session end", "user", username, "reason", reason, "err", err)
	}
}

func joinRoles(roles []Role) string {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	return strings.Join(names, ",")
}

// checkGroup runs one call per key at a time; callers that arrive while it
// runs wait for it and share its result, and Vault's answer (live or ended)
// stays usable for a while (fresh). The zero value is ready.
type checkGroup struct {
	mu    sync.Mutex
	calls map[string]*checkCall
	// now is the portal's clock (nil: time.Now): the time a check returns
	// is compared with it (the UI's recheck interval), so it is read from
	// the same clock.
	now func() time.Time
}

type checkCall struct {
	done chan struct{}
	at   time.Time // when the call began: its answer is at least this fresh
	id   *Identity
	err  error
}

// final reports whether a check's outcome is Vault's answer — the session
// lives, or it ended — rather than a failure to get one.
func final(err error) bool { return err == nil || ErrorCode(err) == EUnauthorized }

// pruneAbove is how many finished calls the group keeps before it drops
// those too old to reuse.
const pruneAbove = 256

func (g *checkGroup) do(key string, fresh time.Duration, fn func() (*Identity, error)) (*Identity, time.Time, error) {
	now := time.Now()
	if g.now != nil {
		now = g.now()
	}
	g.mu.Lock()
	if c, ok := g.calls[key]; ok {
		select {
		case <-c.done:
			if final(c.err) && now.Sub(c.at) < fresh {
				g.mu.Unlock()
				return c.id, c.at, c.err
			}
		default:
			g.mu.Unlock()
			<-c.done
			return c.id, c.at, c.err
		}
	}
	if g.calls == nil {
		g.calls = map[string]*checkCall{}
	}
	if len(g.calls) > pruneAbove {
		for k, c := range g.calls {
			select {
			case <-c.done:
				if now.Sub(c.at) >= fresh {
					delete(g.calls, k)
				}
			default:
			}
		}
	}
	// Waiters never see a nil identity without an error, even if fn panics.
	c := &checkCall{done: make(chan struct{}), at: now, err: errors.New("session check did not finish")}
	g.calls[key] = c
	g.mu.Unlock()
	defer func() {
		if !final(c.err) {
			// Vault did not answer: the next request asks again.
			g.mu.Lock()
			if g.calls[key] == c {
				delete(g.calls, key)
			}
			g.mu.Unlock()
		}
		close(c.done)
	}()
	c.id, c.err = fn()
	return c.id, c.at, c.err
}
