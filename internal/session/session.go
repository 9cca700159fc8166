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
}

// Manager is a sessions.Store backed by a store.Sessions.
type Manager struct {
	store    store.Sessions
	cookie   *securecookie.SecureCookie
	data     *securecookie.SecureCookie
	name     string
	secure   bool
	idle     time.Duration
	absolute time.Duration
	now      func() time.Time
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
		name:     "certportal_session",
		secure:   o.Secure,
		idle:     o.Idle,
		absolute: o.Absolute,
		now:      o.Now,
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
	return m, nil
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
		if err := m.store.DeleteSession(ctx, row.IDHash); err != nil {
			return s, fmt.Errorf("expire session: %w", err)
		}
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

// Sweep deletes expired sessions; serve runs it periodically.
func (m *Manager) Sweep(ctx context.Context) (int64, error) {
	now := m.now()
	return m.store.DeleteExpiredSessions(ctx, now, now.Add(-m.idle))
}

func newID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
