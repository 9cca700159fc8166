package session_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/session"
	"github.com/certportal/certportal/internal/store/sqlite"
)

// TestSweepOnce: two replicas' sweeps (two Managers on two handles of one
// store) running side by side end an expired session once: the second
// finds the first holding the lock while the first is still giving the
// session's token back. Without a lock both would tell EndFunc.
func TestSweepOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	key := make([]byte, 32)
	var (
		ends    atomic.Int64
		inEnd   = make(chan struct{})
		release = make(chan struct{})
	)
	onEnd := func(context.Context, map[any]any, string, bool) error {
		if ends.Add(1) == 1 {
			close(inEnd)
			<-release // the first sweep is slow to give the token back
		}
		return nil
	}
	managers := make([]*session.Manager, 2)
	for i := range managers {
		st, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		m, err := session.New(st, session.Options{Key: key, Idle: time.Minute, Absolute: time.Hour, Now: now, Locker: st})
		if err != nil {
			t.Fatal(err)
		}
		m.OnEnd(onEnd)
		managers[i] = m
	}
	r := httptest.NewRequest("GET", "/", nil)
	s, err := managers[0].New(r, managers[0].Name())
	if err != nil {
		t.Fatal(err)
	}
	s.Values["user"] = "alice"
	if err := managers[0].Save(r, httptest.NewRecorder(), s); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(2 * time.Minute)) // idle past its timeout

	first := make(chan error, 1)
	go func() { _, err := managers[0].Sweep(ctx); first <- err }()
	<-inEnd // the first sweep is ending the session, its row still there
	n, err := managers[1].Sweep(ctx)
	if !errors.Is(err, session.ErrSweepBusy) || n != 0 {
		t.Errorf("second sweep beside the first: %d %v, want 0 and ErrSweepBusy", n, err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n, err := managers[1].Sweep(ctx); err != nil || n != 0 {
		t.Errorf("a later sweep: %d %v, want nothing left", n, err)
	}
	if got := ends.Load(); got != 1 {
		t.Fatalf("the session was ended %d times, want 1", got)
	}
}
