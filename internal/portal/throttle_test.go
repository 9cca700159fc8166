package portal

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/metrics"
)

func TestLoginThrottleWindows(t *testing.T) {
	th := newLoginThrottle(2, time.Minute, nil)
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
	th2 := newLoginThrottle(1, time.Minute, nil)
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
	if newLoginThrottle(0, time.Minute, nil) != nil {
		t.Fatal("limit 0 is not off")
	}
}

// A burst of concurrent attempts cannot get more than the limit through:
// each is counted when it is let through, before Vault answers.
func TestLoginThrottleBurst(t *testing.T) {
	th := newLoginThrottle(20, time.Minute, nil)
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

// A network cannot multiply the per-address limit by spreading its tries
// over its addresses: each wider prefix has its own, higher limit.
func TestLoginThrottleWidePrefixes(t *testing.T) {
	th := newLoginThrottle(2, time.Minute, []NetworkLimit{{IPv6: true, Bits: 56, Max: 4}, {IPv6: true, Bits: 48, Max: 6}, {Bits: 24, Max: 3}})
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	try := func(ip string) bool { return th.attempt(ip, t0).allowed }
	// Two /64s of one /56 fill the /56.
	for _, ip := range []string{"2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:2::1", "2001:db8:0:2::2"} {
		if !try(ip) {
			t.Fatalf("%s refused", ip)
		}
	}
	if try("2001:db8:0:3::1") {
		t.Fatal("a fresh /64 in a full /56 was let through")
	}
	// Another /56 of the same /48 gets two more, then the /48 is full.
	if !try("2001:db8:0:100::1") || !try("2001:db8:0:101::1") {
		t.Fatal("another /56 refused before the /48 is full")
	}
	if try("2001:db8:0:200::1") {
		t.Fatal("a fresh /56 in a full /48 was let through")
	}
	if !try("2001:db8:1::1") {
		t.Fatal("another /48 refused")
	}
	// A refused attempt does not count against the narrower prefixes.
	th.refund("2001:db8:0:100::1", t0)
	if !try("2001:db8:0:300::1") {
		t.Fatal("a refunded attempt still counts against the /48")
	}
	// IPv4: the /24 limit applies to its addresses together.
	for _, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		if !try(ip) {
			t.Fatalf("%s refused", ip)
		}
	}
	v := th.attempt("192.0.2.4", t0.Add(10*time.Second))
	if v.allowed || v.retryAfter != 50*time.Second || !v.firstRefusal {
		t.Fatalf("a fresh address in a full /24: %+v", v)
	}
	if !try("192.0.3.1") {
		t.Fatal("the next /24 refused")
	}
}

// When the table is full of live windows, a new address is refused, not
// let through untracked; addresses already tracked carry on, and room comes
// back when windows end.
func TestLoginThrottleFullTable(t *testing.T) {
	th := newLoginThrottle(3, time.Minute, nil)
	th.maxEntries = 10
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 10; i++ {
		if !th.attempt(fmt.Sprintf("10.0.0.%d", i), t0).allowed {
			t.Fatalf("address %d refused while there is room", i)
		}
	}
	v := th.attempt("10.0.1.1", t0.Add(time.Second))
	if v.allowed || v.retryAfter <= 0 || v.retryAfter > time.Minute || !v.firstRefusal {
		t.Fatalf("new address with the table full: %+v", v)
	}
	if v := th.attempt("10.0.1.2", t0.Add(time.Second)); v.allowed || v.firstRefusal {
		t.Fatalf("second new address with the table full: %+v", v)
	}
	if !th.attempt("10.0.0.1", t0.Add(time.Second)).allowed {
		t.Fatal("a tracked address was refused because the table is full")
	}
	if !th.attempt("10.0.1.1", t0.Add(time.Minute)).allowed {
		t.Fatal("still refused after every window ended")
	}
}

// TestLoginThrottleFullTableReported (review finding L2): a full address
// table is visible — a gauge of tracked prefixes, a counter of attempts it
// refused — and logged as one error per window, not one per refusal.
func TestLoginThrottleFullTableReported(t *testing.T) {
	var logs bytes.Buffer
	m := metrics.New()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s := NewService(nil, nil, nil, Options{LoginMaxFailures: 3, LoginFailureWindow: time.Minute, Metrics: m},
		slog.New(slog.NewTextHandler(&logs, nil)))
	s.now = func() time.Time { return now }
	s.throttle.maxEntries = 10
	try := func(ip string) throttleVerdict {
		v := s.throttle.attempt(ip, s.now())
		s.throttled(context.Background(), v)
		return v
	}
	for i := 0; i < 10; i++ {
		if !try(fmt.Sprintf("10.0.0.%d", i)).allowed {
			t.Fatalf("address %d refused while there is room", i)
		}
	}
	for i := 0; i < 200; i++ {
		now = now.Add(100 * time.Millisecond) // 20 s: inside one window
		if try(fmt.Sprintf("10.0.%d.%d", 1+i/250, i%250)).allowed {
			t.Fatalf("new address %d let through with the table full", i)
		}
	}
	scrape := func() string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	out := scrape()
	for _, want := range []string{"certportal_login_throttle_table_full_total 200", "certportal_login_throttle_entries 10"} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if n := strings.Count(logs.String(), "login throttle table full"); n != 1 {
		t.Fatalf("%d log lines for 200 refusals in one window, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "capacity=10") {
		t.Errorf("log line: %s", logs.String())
	}
	// A window later, still full (the tracked ones tried again): one more
	// line, counting the refusals since the first.
	now = now.Add(time.Minute)
	for i := 0; i < 10; i++ {
		try(fmt.Sprintf("10.0.0.%d", i))
	}
	now = now.Add(time.Second)
	try("10.0.9.1")
	if n := strings.Count(logs.String(), "login throttle table full"); n != 2 {
		t.Fatalf("%d log lines after a second window, want 2:\n%s", n, logs.String())
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if !strings.Contains(lines[0], "refused_since_last_report=1 ") || !strings.Contains(lines[1], "refused_since_last_report=200 ") {
		t.Errorf("the lines do not count the refusals since the last one (1, then 199 + 1):\n%s", logs.String())
	}
}
