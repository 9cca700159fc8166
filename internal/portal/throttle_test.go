package portal

import (
	"sync"
	"testing"
	"time"
)

func TestLoginThrottleWindows(t *testing.T) {
	th := newLoginThrottle(2, time.Minute)
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 2; i++ {
		if v := th.attempt("10.0.0.1", t0.Add(time.Duration(i)*10*time.Second)); !v.allowed {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	v := th.attempt("10.0.0.1", t0.Add(20*time.Second))
	if v.allowed || v.retryAfter != 40*time.Second || !v.firstRefusal {
		t.Fatalf("over the limit: %+v", v)
	}
	if v := th.attempt("10.0.0.1", t0.Add(21*time.Second)); v.allowed || v.firstRefusal {
		t.Fatalf("second refusal: %+v", v)
	}
	if v := th.attempt("10.0.0.2", t0.Add(20*time.Second)); !v.allowed {
		t.Fatal("another address refused")
	}
	if v := th.attempt("10.0.0.1", t0.Add(time.Minute)); !v.allowed {
		t.Fatal("refused after the window ended")
	}
	// A refunded attempt (a success) does not count.
	th2 := newLoginThrottle(1, time.Minute)
	th2.attempt("10.0.0.9", t0)
	th2.refund("10.0.0.9", t0)
	if v := th2.attempt("10.0.0.9", t0); !v.allowed {
		t.Fatal("a refunded attempt still counted")
	}
	// IPv6 addresses count per /64.
	th.attempt("2001:db8::1", t0)
	th.attempt("2001:db8::2", t0)
	if v := th.attempt("2001:db8::ffff", t0); v.allowed {
		t.Fatal("a /64 was not counted as one client")
	}
	if v := th.attempt("2001:db8:0:1::1", t0); !v.allowed {
		t.Fatal("the next /64 was refused")
	}
	// Unknown addresses and a nil (off) throttle never refuse.
	if v := th.attempt("", t0); !v.allowed {
		t.Fatal("empty address refused")
	}
	var off *loginThrottle
	off.refund("10.0.0.1", t0)
	if v := off.attempt("10.0.0.1", t0); !v.allowed {
		t.Fatal("off throttle refused")
	}
	if newLoginThrottle(0, time.Minute) != nil {
		t.Fatal("limit 0 is not off")
	}
}

// A burst of concurrent attempts cannot get more than the limit through:
// each is counted when it is let through, before Vault answers.
func TestLoginThrottleBurst(t *testing.T) {
	th := newLoginThrottle(20, time.Minute)
	now := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if th.attempt("192.0.2.1", now).allowed {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if allowed != 20 {
		t.Fatalf("%d of 500 concurrent attempts let through, want 20", allowed)
	}
}
