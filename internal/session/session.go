// Package session keeps portal sessions on the server behind gorilla/sessions:
// the cookie carries only a signed random id, the session's values live in the
// store encrypted, and idle and absolute timeouts are enforced on every read.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/certportal/certportal/internal/store"
)

// Options configure a Manager.
type Options struct {
	// Key is the master secret (32+ bytes); cookie signing and data
	// encryption keys are derived from it.
	Key      []byte
	Secure   bool // served over TLS: Secure flag and the __Host- prefix
	Idle     time.Duration
	Absolute time.Duration
	Now      func() time.Time // for tests; time.Now when nil
	// Locker, when set, keeps sweeps on one replica at a time: two sweeps
	// side by side would both end the same expired session, giving its
	// token back twice and telling EndFunc twice.
	Locker store.Locker
}

// ErrSweepBusy: another sweep (on this or another replica) holds the
// sweep's lock; this one did nothing.
var ErrSweepBusy = errors.New("session: another sweep is running")

// sweepLock is the store lock a sweep holds.
const sweepLock = "session-sweep"

// Why a session ended, for EndFunc. CheckSession in the portal names the
// reasons Vault gives.
const (
	EndIdle     = "idle timeout"
	EndAbsolute = "absolute timeout"
	EndReplaced = "replaced by a new login"
	EndShutdown = "shutdown with a random session key"
)

// EndFunc is told of a session that ends other than by logout — expired,
// replaced by a new login, swept, or left unreadable by a shutdown — with
// its decoded values, before its row is deleted, so that the credential it
// holds can be given back. final says the row is deleted whatever EndFunc
// returns; otherwise an error keeps the row for a later sweep to retry.
type EndFunc func(ctx context.Context, values map[any]any, reason string, final bool) error

// Manager is a sessions.Store backed by a store.Sessions.
type Manager struct {
	store  store.Sessions
	cookie *securecookie.SecureCookie
	data   *securecookie.SecureCookie
	// ending decodes the data of sessions being ended, whatever its age:
	// data's own timestamp check would refuse a row swept long after its
	// absolute expiry, and its token would never be revoked.
	ending   *securecookie.SecureCookie
	name     string
	secure   bool
	idle     time.Duration
	absolute time.Duration
	now      func() time.Time
	onEnd    EndFunc
	locker   store.Locker
}

var _ sessions.Store = (*Manager)(nil)

// touchEvery bounds how often a read session's last-seen time is written:
// exact to the second is not worth a database write per request.
const touchEvery = time.Minute

// New returns a Manager. The cookie name is fixed per transport so that a
// session made over plain HTTP is never sent over TLS and vice versa.
func New(st store.Sessions, o Options) (*Manager, error) {
	if len(o.Key) < 32 {
		return nil, errors.New("session: key must be at least 32 bytes")
	}
	if o.Idle <= 0 || o.Absolute <= 0 {
		return nil, errors.New("session: timeouts must be positive")
	}
	m := &Manager{
		store:    st,
		cookie:   securecookie.New(derive(o.Key, "cookie-hmac", 64), nil),
		data:     securecookie.New(derive(o.Key, "data-hmac", 64), derive(o.Key, "data-aes", 32)),
		ending:   securecookie.New(derive(o.Key, "data-hmac", 64), derive(o.Key, "data-aes", 32)),
		name:     "certportal_session",
		secure:   o.Secure,
		idle:     o.Idle,
		absolute: o.Absolute,
		now:      o.Now,
		locker:   o.Locker,
	}
	if m.now == nil {
		m.now = time.Now
	}
	if o.Secure {
		// __Host- binds the cookie to this exact origin: no Domain, Path=/, Secure.
		m.name = "__Host-certportal_session"
	}
	m.cookie.SetSerializer(codec{})
	m.data.SetSerializer(codec{})
	m.cookie.MaxAge(int(o.Absolute / time.Second))
	m.data.MaxAge(int(o.Absolute/time.Second) + 60)
	m.data.MaxLength(0)
	m.ending.SetSerializer(codec{})
	m.ending.MaxAge(0)
	m.ending.MaxLength(0)
	return m, nil
}

// OnEnd sets the function told of sessions that end other than by logout.
// Call it before the Manager serves requests or sweeps.
func (m *Manager) OnEnd(fn EndFunc) { m.onEnd = fn }

// end tells onEnd of a session that ends; nil when there is nothing to do.
func (m *Manager) end(ctx context.Context, values map[any]any, reason string, final bool) error {
	if m.onEnd == nil || len(values) == 0 {
		return nil
	}
	return m.onEnd(ctx, values, reason, final)
}

// errNotEnded: onEnd could not finish with a session, which is kept.
var errNotEnded = errors.New("session kept for the next sweep")

// expire ends an expired row: its values are decoded and handed to onEnd
// before the row goes. A row onEnd could not finish with stays for the
// next sweep; one this key cannot decode goes at once — nothing in it can
// be given back by this process.
func (m *Manager) expire(ctx context.Context, row *store.Session, now time.Time) (deleted bool, err error) {
	var values map[any]any
	if m.ending.Decode("session-data", string(row.Data), &values) == nil {
		reason := EndIdle
		if !now.Before(row.ExpiresAt) {
			reason = EndAbsolute
		}
		if err := m.end(ctx, values, reason, false); err != nil {
			return false, fmt.Errorf("%w: %w", errNotEnded, err)
		}
	}
	if err := m.store.DeleteSession(ctx, row.IDHash); err != nil {
		return false, fmt.Errorf("expire session: %w", err)
	}
	return true, nil
}

// Name is the session cookie's name.
func (m *Manager) Name() string { return m.name }

func derive(key []byte, label string, n int) []byte {
	var out []byte
	for i := byte(0); len(out) < n; i++ {
		h := sha256.New()
		h.Write([]byte("certportal-session/" + label))
		h.Write([]byte{i})
		h.Write(key)
		out = h.Sum(out)
	}
	return out[:n]
}

func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

func (m *Manager) options() *sessions.Options {
	return &sessions.Options{
		Path:     "/",
		MaxAge:   int(m.absolute / time.Second),
		Secure:   m.secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// Get returns the request's session, cached for the request by gorilla's registry.
func (m *Manager) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(m, name)
}

// New loads the session named by the request's cookie, or returns a fresh one.
// A missing, forged, expired or unknown cookie yields a fresh session, never
// an error; only a failing store is an error.
func (m *Manager) New(r *http.Request, name string) (*sessions.Session, error) {
	s := sessions.NewSession(m, name)
	s.Options = m.options()
	s.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return s, nil
	}
	var id string
	if err := m.cookie.Decode(name, c.Value, &id); err != nil || id == "" {
		return s, nil
	}
	ctx := r.Context()
	row, err := m.store.GetSession(ctx, hashID(id))
	if errors.Is(err, store.ErrNotFound) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("load session: %w", err)
	}
	now := m.now()
	if !now.Before(row.ExpiresAt) || now.Sub(row.LastSeen) > m.idle {
		if _, err := m.expire(ctx, row, now); err != nil && !errors.Is(err, errNotEnded) {
			return s, err
		}
		// Kept or not, it is over for this request: a fresh session.
		return s, nil
	}
	if err := m.data.Decode("session-data", string(row.Data), &s.Values); err != nil {
		// Data we cannot authenticate is dropped, not trusted.
		return s, nil
	}
	s.ID = id
	s.IsNew = false
	if now.Sub(row.LastSeen) >= touchEvery {
		if err := m.store.TouchSession(ctx, row.IDHash, now); err != nil {
			return s, fmt.Errorf("touch session: %w", err)
		}
	}
	return s, nil
}

// Save writes the session and sets its cookie; a session whose MaxAge is
// negative is deleted from the store and its cookie cleared.
func (m *Manager) Save(r *http.Request, w http.ResponseWriter, s *sessions.Session) error {
	ctx := r.Context()
	if s.Options != nil && s.Options.MaxAge < 0 {
		if s.ID != "" {
			if err := m.store.DeleteSession(ctx, hashID(s.ID)); err != nil {
				return fmt.Errorf("delete session: %w", err)
			}
		}
		http.SetCookie(w, sessions.NewCookie(s.Name(), "", s.Options))
		return nil
	}
	now := m.now()
	if s.ID == "" {
		id, err := newID()
		if err != nil {
			return err
		}
		s.ID = id
	}
	data, err := m.data.Encode("session-data", s.Values)
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	if err := m.store.SaveSession(ctx, &store.Session{
		IDHash: hashID(s.ID), Data: []byte(data),
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(m.absolute),
	}); err != nil {
		return err
	}
	val, err := m.cookie.Encode(s.Name(), s.ID)
	if err != nil {
		return fmt.Errorf("encode cookie: %w", err)
	}
	http.SetCookie(w, sessions.NewCookie(s.Name(), val, s.Options))
	return nil
}

// Renew discards s's stored state and gives it a new id on the next Save, so
// that an id planted before login is worthless after it (session fixation).
func (m *Manager) Renew(ctx context.Context, s *sessions.Session) error {
	if s.ID != "" {
		// The replaced session goes whatever becomes of its token: an old
		// id must never stay valid after a login.
		_ = m.end(ctx, s.Values, EndReplaced, true)
		if err := m.store.DeleteSession(ctx, hashID(s.ID)); err != nil {
			return fmt.Errorf("renew session: %w", err)
		}
	}
	s.ID = ""
	s.IsNew = true
	s.Values = map[any]any{}
	s.Options = m.options()
	return nil
}

// Update writes s's values without changing its lifetime. A session
// deleted meanwhile (a logout in another request) is not re-created:
// store.ErrNotFound.
func (m *Manager) Update(ctx context.Context, s *sessions.Session) error {
	data, err := m.data.Encode("session-data", s.Values)
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	return m.store.UpdateSessionData(ctx, hashID(s.ID), []byte(data), m.now())
}

// Rotate gives the stored session s a new id, keeping its values (as they
// are now) and its lifetime, and sets the cookie for the new id on w. The
// old id is gone from the store at once: a copy of the old cookie names
// nothing. Call it when a session gains privilege (a step-up, a new role),
// so that a cookie copied before is not privileged after. A session
// deleted meanwhile (a logout in another request) is not re-created:
// store.ErrNotFound.
func (m *Manager) Rotate(r *http.Request, w http.ResponseWriter, s *sessions.Session) error {
	if s.ID == "" {
		return store.ErrNotFound // never saved: nothing to rotate
	}
	id, err := newID()
	if err != nil {
		return err
	}
	data, err := m.data.Encode("session-data", s.Values)
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	val, err := m.cookie.Encode(s.Name(), id)
	if err != nil {
		return fmt.Errorf("encode cookie: %w", err)
	}
	if err := m.store.RenameSession(r.Context(), hashID(s.ID), hashID(id), []byte(data), m.now()); err != nil {
		return err
	}
	s.ID = id
	if s.Options == nil {
		s.Options = m.options()
	}
	http.SetCookie(w, sessions.NewCookie(s.Name(), val, s.Options))
	return nil
}

// Drop deletes s, clears its cookie and leaves s a fresh, empty session for
// the rest of the request. Its credential is the caller's business.
func (m *Manager) Drop(r *http.Request, w http.ResponseWriter, s *sessions.Session) error {
	if s.ID != "" {
		if err := m.store.DeleteSession(r.Context(), hashID(s.ID)); err != nil {
			return fmt.Errorf("delete session: %w", err)
		}
	}
	gone := m.options()
	gone.MaxAge = -1
	http.SetCookie(w, sessions.NewCookie(s.Name(), "", gone))
	s.ID = ""
	s.IsNew = true
	s.Values = map[any]any{}
	s.Options = m.options()
	return nil
}

// sweepPage is how many expired sessions the sweep reads at a time.
const sweepPage = 100

// Sweep ends expired sessions: each one's values go to onEnd (which revokes
// its Vault token) before its row is deleted. A session onEnd could not
// finish with (Vault unreachable) stays, and the sweep stops there until
// the next run. serve runs it periodically; it returns how many it deleted,
// or ErrSweepBusy when Options.Locker says another sweep is on it.
func (m *Manager) Sweep(ctx context.Context) (int64, error) {
	if m.locker != nil {
		unlock, ok, err := m.locker.TryLock(ctx, sweepLock)
		if err != nil {
			return 0, fmt.Errorf("sweep sessions: %w", err)
		}
		if !ok {
			return 0, ErrSweepBusy
		}
		defer unlock()
	}
	now := m.now()
	var n int64
	for after := ""; ; {
		rows, err := m.store.ExpiredSessions(ctx, now, now.Add(-m.idle), after, sweepPage)
		if err != nil {
			return n, err
		}
		for _, row := range rows {
			after = row.IDHash
			deleted, err := m.expire(ctx, row, now)
			if err != nil {
				// Vault unreachable: the rest would fail the same way,
				// each after a timeout. The next sweep starts over.
				return n, err
			}
			if deleted {
				n++
			}
		}
		if len(rows) < sweepPage {
			return n, nil
		}
	}
}

// EndAll ends every session this Manager's key can read, telling onEnd of
// each (final) and deleting it. serve calls it on a graceful shutdown when
// the session key was random: no later process can read these sessions, so
// their tokens would otherwise live on in Vault, unreachable, until their
// TTL. Sessions under another key are left alone.
func (m *Manager) EndAll(ctx context.Context) (int64, error) {
	// Far enough ahead, every session is past its absolute expiry.
	forever := m.now().Add(100 * 365 * 24 * time.Hour)
	var n int64
	for after := ""; ; {
		rows, err := m.store.ExpiredSessions(ctx, forever, forever, after, sweepPage)
		if err != nil {
			return n, err
		}
		for _, row := range rows {
			after = row.IDHash
			var values map[any]any
			if m.ending.Decode("session-data", string(row.Data), &values) != nil {
				continue
			}
			_ = m.end(ctx, values, EndShutdown, true)
			if err := m.store.DeleteSession(ctx, row.IDHash); err != nil {
				return n, fmt.Errorf("end session: %w", err)
			}
			n++
		}
		if len(rows) < sweepPage || ctx.Err() != nil {
			return n, ctx.Err()
		}
	}
}

func newID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
