// Package store defines what certportal keeps between requests — sessions for
// now — independent of the database that holds it.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a record does not exist (or has expired).
var ErrNotFound = errors.New("store: not found")

// Session is a server-side session. Data is opaque to the store: the session
// layer encrypts it before it gets here, so a copy of the database holds no
// usable Vault token.
type Session struct {
	IDHash    string // SHA-256 of the cookie's random id; the id itself is never stored
	Data      []byte
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time // absolute expiry
}

// Sessions stores sessions.
type Sessions interface {
	SaveSession(ctx context.Context, s *Session) error
	GetSession(ctx context.Context, idHash string) (*Session, error)
	TouchSession(ctx context.Context, idHash string, at time.Time) error
	DeleteSession(ctx context.Context, idHash string) error
	// DeleteExpiredSessions removes sessions past their absolute expiry or
	// idle since before idleBefore.
	DeleteExpiredSessions(ctx context.Context, now, idleBefore time.Time) (int64, error)
}

// Store is the whole persistence interface the portal needs.
type Store interface {
	Sessions
	Ping(ctx context.Context) error
	Close() error
}
