package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// Audited writes go through one writer goroutine that commits them in
// groups: with synchronous=FULL every commit is an fsync, and SQLite takes
// one writer at a time, so eight users issuing at once would otherwise queue
// behind eight fsyncs. Each request runs in its own SAVEPOINT, so one failing
// request (a duplicate serial, say) is rolled back alone; a failed COMMIT
// fails every request in the group. Callers wait for the commit: an event
// reported written is on disk.
type writer struct {
	reqs chan writeReq
	done chan struct{}

	mu     sync.RWMutex // held for reading while sending; Close takes it to close reqs
	closed bool
}

type writeReq struct {
	fn  func(tx *sql.Tx) error
	res chan error
}

// maxGroup bounds a group so one commit never holds the lock for long.
const maxGroup = 64

func (s *DB) startWriter() {
	s.w = &writer{reqs: make(chan writeReq), done: make(chan struct{})}
	go s.runWriter()
}

func (s *DB) runWriter() {
	defer close(s.w.done)
	for first := range s.w.reqs {
		group := []writeReq{first}
	collect:
		for len(group) < maxGroup {
			select {
			case r, ok := <-s.w.reqs:
				if !ok {
					break collect
				}
				group = append(group, r)
			default:
				break collect
			}
		}
		s.commitGroup(group)
	}
}

func (s *DB) commitGroup(group []writeReq) {
	// The requests' contexts are not used: a write a caller gave up on must
	// still end in a known state, and the caller waits for it anyway.
	ctx := context.Background()
	results := make([]error, len(group))
	fail := func(err error) {
		for _, r := range group {
			r.res <- err
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	for i, r := range group {
		if _, err := tx.ExecContext(ctx, `SAVEPOINT req`); err != nil {
			tx.Rollback()
			fail(fmt.Errorf("savepoint: %w", err))
			return
		}
		if err := r.fn(tx); err != nil {
			results[i] = err
			if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO req`); rerr != nil {
				tx.Rollback()
				fail(fmt.Errorf("rollback to savepoint: %w (after %v)", rerr, err))
				return
			}
		}
		if _, err := tx.ExecContext(ctx, `RELEASE req`); err != nil {
			tx.Rollback()
			fail(fmt.Errorf("release savepoint: %w", err))
			return
		}
	}
	if err := tx.Commit(); err != nil {
		fail(fmt.Errorf("commit: %w", err))
		return
	}
	for i, r := range group {
		r.res <- results[i]
	}
}

// write runs fn in the next group commit and returns its outcome.
func (s *DB) write(fn func(tx *sql.Tx) error) error {
	res := make(chan error, 1)
	s.w.mu.RLock()
	if s.w.closed {
		s.w.mu.RUnlock()
		return errors.New("sqlite store closed")
	}
	s.w.reqs <- writeReq{fn: fn, res: res}
	s.w.mu.RUnlock()
	return <-res
}

// stopWriter lets queued writes finish, then stops the writer.
func (s *DB) stopWriter() {
	s.w.mu.Lock()
	if s.w.closed {
		s.w.mu.Unlock()
		return
	}
	s.w.closed = true
	close(s.w.reqs)
	s.w.mu.Unlock()
	<-s.w.done
}
