package sqlite

import (
	"context"
	"sync"
)

// locks are the in-process locks of every SQLite store: one process serves
// a SQLite file, so a lock there is a lock for the whole portal. They are
// keyed by the file, so two handles on one file (a test, or serve and a
// CLI run in one process) exclude each other too.
var locks sync.Map // path + "\x00" + name -> *namedLock

// namedLock is a lock whose state can be read without taking it (mu
// guards held for a moment only, so reading it never makes a TryLock fail).
type namedLock struct {
	mu   sync.Mutex
	held bool
}

func (s *DB) namedLock(name string) *namedLock {
	v, _ := locks.LoadOrStore(s.path+"\x00"+name, &namedLock{})
	return v.(*namedLock)
}

func (s *DB) TryLock(ctx context.Context, name string) (func(), bool, error) {
	l := s.namedLock(name)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held {
		return nil, false, nil
	}
	l.held = true
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.held = false
			l.mu.Unlock()
		})
	}, true, nil
}

// LockHeld reports whether the named lock is held, without taking it.
func (s *DB) LockHeld(ctx context.Context, name string) (bool, error) {
	l := s.namedLock(name)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held, nil
}
