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
	"strings"
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
	if row.MovedTo == nil && m.ending.Decode("session-data", string(row.Data), &values) == nil {
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
	now := m.now()
	id, row, err := m.follow(ctx, id, now)
	if errors.Is(err, store.ErrNotFound) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("load session: %w", err)
	}
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
	s.ID = id // the new id when the cookie's was moved away: see Reissue
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
	err = m.store.UpdateSessionData(ctx, hashID(s.ID), []byte(data), m.now())
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	// Moved to a new id by a request beside this one (a role gained):
	// the write goes to the session where it went, and s takes its id
	// (Reissue sets its cookie).
	id, _, ferr := m.follow(ctx, s.ID, m.now())
	if ferr != nil || id == s.ID {
		return err
	}
	s.ID = id
	return m.store.UpdateSessionData(ctx, hashID(id), []byte(data), m.now())
}

// MoveGrace is how long an id a session moved away from (Rotate) still
// names it. A browser whose answer carrying the new cookie was lost (a
// double-click on a form without script, a reload while Vault issues, an
// aborted fetch) still sends the old one: within the grace that request is
// served as the session, and Reissue sets the new cookie again. A second
// request of the session rotating at the same moment (both saw the new
// role) follows the move instead of ending logged out. Ten seconds covers
// a lost answer and its retry; a cookie copied before the move, which the
// move is there to devalue, is privileged for at most that long — and only
// a copy sent within it.
const MoveGrace = 10 * time.Second

// moveHops bounds how many moves a cookie is followed through: two moves
// within one grace (a step-up and a role gained) are two hops.
const moveHops = 4

// follow returns the live session the id names, directly or through the
// forwarding rows Rotate leaves, with the id that names it now.
// store.ErrNotFound when there is none: never was, deleted, or moved away
// longer than MoveGrace ago (that forwarding row is deleted on the way).
func (m *Manager) follow(ctx context.Context, id string, now time.Time) (string, *store.Session, error) {
	for hop := 0; ; hop++ {
		row, err := m.store.GetSession(ctx, hashID(id))
		if err != nil {
			return "", nil, err
		}
		if row.MovedTo == nil {
			return id, row, nil
		}
		var next string
		if hop == moveHops || !now.Before(row.ExpiresAt) ||
			m.data.Decode(moveName(row.IDHash), string(row.MovedTo), &next) != nil || next == "" {
			if !now.Before(row.ExpiresAt) {
				if err := m.store.DeleteSession(ctx, row.IDHash); err != nil {
					return "", nil, fmt.Errorf("delete moved session: %w", err)
				}
			}
			return "", nil, store.ErrNotFound
		}
		id = next
	}
}

// moveName binds a forwarding row's encrypted new id to the old id's hash:
// one cannot be copied to another row.
func moveName(oldHash string) string { return "session-moved-" + oldHash }

// Moved says the request's cookie names another id than s's: it was moved
// away (Rotate) and the request forwarded within MoveGrace, or a request
// beside this one moved it (Update). False when w already sets s's cookie.
func (m *Manager) Moved(r *http.Request, w http.ResponseWriter, s *sessions.Session) bool {
	if s.ID == "" || s.IsNew {
		return false
	}
	var id string
	if c, err := r.Cookie(s.Name()); err == nil {
		if m.cookie.Decode(s.Name(), c.Value, &id) != nil {
			id = ""
		}
	}
	if id == s.ID {
		return false
	}
	for _, line := range w.Header().Values("Set-Cookie") {
		if strings.HasPrefix(line, s.Name()+"=") {
			return false
		}
	}
	return true
}

// Reissue sets the cookie for s on w (after Moved).
func (m *Manager) Reissue(w http.ResponseWriter, s *sessions.Session) error {
	val, err := m.cookie.Encode(s.Name(), s.ID)
	if err != nil {
		return fmt.Errorf("encode cookie: %w", err)
	}
	if s.Options == nil {
		s.Options = m.options()
	}
	http.SetCookie(w, sessions.NewCookie(s.Name(), val, s.Options))
	return nil
}

// Rotate gives the stored session s a new id, keeping its values (as they
// are now) and its lifetime, and sets the cookie for the new id on w. The
// old id names the session for MoveGrace more (see there), then nothing.
// Call it when a session gains privilege (a step-up, a new role), so that a
// cookie copied before is not privileged after. A session deleted
// meanwhile (a logout in another request) is not re-created:
// store.ErrNotFound. One moved meanwhile by a request beside this one is
// followed: s's values are written there and s takes its id.
//
// The forwarding row left at the old id holds the new id encrypted and
// authenticated with the session data key (bound to the old id's hash),
// never in clear nor as a hash: a forwarded request must be able to set
// the cookie for the session it is served as, and a hash cannot make one.
// A copy of the database alone gives no usable cookie, as for the data;
// whoever holds the session key can sign cookies anyway. The other way —
// rotating the new session again on each forwarded request, so that the
// row could hold a hash — would move the session away from the browser
// whose answer did arrive (two tabs, the script's fetch after the form)
// each time the slow one catches up, and chain moves without end.
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
	oldHash := hashID(s.ID)
	moved, err := m.data.Encode(moveName(oldHash), id)
	if err != nil {
		return fmt.Errorf("encode session move: %w", err)
	}
	now := m.now()
	err = m.store.RenameSession(r.Context(), oldHash, hashID(id), []byte(data), now, []byte(moved), now.Add(MoveGrace))
	if errors.Is(err, store.ErrNotFound) {
		// Moved already (or gone): follow it, or end as gone.
		next, _, ferr := m.follow(r.Context(), s.ID, now)
		if ferr != nil || next == s.ID {
			return err
		}
		if err := m.store.UpdateSessionData(r.Context(), hashID(next), []byte(data), now); err != nil {
			return err
		}
		id = next
	} else if err != nil {
		return err
	}
	val, err := m.cookie.Encode(s.Name(), id)
	if err != nil {
		return fmt.Errorf("encode cookie: %w", err)
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
