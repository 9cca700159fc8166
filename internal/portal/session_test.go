package portal

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCheckGroup: concurrent checks of one key share one call, a fresh
// answer is reused with its own time, and a failure to get an answer is not.
func TestCheckGroup(t *testing.T) {
	var g checkGroup
	var calls atomic.Int64
	release := make(chan struct{})
	slow := func() (*Identity, error) {
		calls.Add(1)
		<-release
		return &Identity{Username: "alice"}, nil
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if id, _, err := g.do("k", time.Minute, slow); err != nil || id.Username != "alice" {
				t.Errorf("shared call: %v %v", id, err)
			}
		}()
	}
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the others queue behind the first
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("16 concurrent checks made %d calls, want 1", n)
	}
	_, at1, _ := g.do("k", time.Minute, slow)
	if n := calls.Load(); n != 1 {
		t.Fatalf("a fresh answer was not reused: %d calls", n)
	}
	if _, at2, _ := g.do("k", 0, slow); calls.Load() != 2 || !at2.After(at1) {
		t.Fatalf("a stale answer was reused: %d calls", calls.Load())
	}

	down := func() (*Identity, error) {
		calls.Add(1)
		return nil, &Error{Code: EUnavailable, Message: "error.session_unverified", Err: errors.New("sealed")}
	}
	before := calls.Load()
	g.do("d", time.Minute, down)
	g.do("d", time.Minute, down)
	if n := calls.Load() - before; n != 2 {
		t.Fatalf("an unavailable Vault's failure was reused: %d calls for 2 checks", n)
	}
	ended := func() (*Identity, error) {
		calls.Add(1)
		return nil, &Error{Code: EUnauthorized, Message: "error.session_expired"}
	}
	before = calls.Load()
	g.do("e", time.Minute, ended)
	if _, _, err := g.do("e", time.Minute, ended); ErrorCode(err) != EUnauthorized || calls.Load()-before != 1 {
		t.Fatalf("an ended session was checked again: %v, %d calls", err, calls.Load()-before)
	}
}
