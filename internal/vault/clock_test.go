package vault

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv/syncbuf"
)

// TestClockSkewFromDate: the skew comes from the Date header of Vault's
// answers through the client's own transport, whichever call made them;
// the warning is logged once per ten minutes while over the threshold,
// and again at once after the clocks agreed in between.
func TestClockSkewFromDate(t *testing.T) {
	var mu sync.Mutex
	vaultOffset := -60 * time.Second // Vault's clock minus the real one
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		off := vaultOffset
		mu.Unlock()
		w.Header().Set("Date", time.Now().Add(off).UTC().Format(http.TimeFormat))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"initialized":true,"sealed":false,"standby":false}`))
	}))
	defer srv.Close()
	var logs syncbuf.Buffer
	var clockMu sync.Mutex
	var portalOffset time.Duration // the portal's clock minus the real one
	now := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return time.Now().Add(portalOffset) }
	advance := func(d time.Duration) { clockMu.Lock(); portalOffset += d; clockMu.Unlock() }
	c, err := New(Config{Addr: srv.URL, Now: now, SkewWarn: 30 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, known := c.ClockSkew(); known {
		t.Fatal("skew known before any answer")
	}
	health := func() {
		t.Helper()
		if err := c.Health(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	warnings := func() int { return strings.Count(logs.String(), "the portal's clock and Vault's disagree") }
	health()
	if skew, known := c.ClockSkew(); !known || skew < -61*time.Second || skew > -59*time.Second {
		t.Fatalf("skew %s (known %v), want about -60s", skew, known)
	}
	health()
	health()
	if n := warnings(); n != 1 {
		t.Fatalf("%d warnings after three answers, want 1", n)
	}
	advance(11 * time.Minute) // the portal's clock runs on; Vault's offset follows it
	mu.Lock()
	vaultOffset = 11*time.Minute - 60*time.Second
	mu.Unlock()
	health()
	if n := warnings(); n != 2 {
		t.Fatalf("%d warnings ten minutes on, want 2", n)
	}
	mu.Lock()
	vaultOffset = 11 * time.Minute // agree again
	mu.Unlock()
	health()
	if skew, _ := c.ClockSkew(); skew < -time.Second || skew > time.Second {
		t.Fatalf("skew %s with agreeing clocks", skew)
	}
	mu.Lock()
	vaultOffset = 11*time.Minute + 45*time.Second
	mu.Unlock()
	health()
	if n := warnings(); n != 3 {
		t.Fatalf("%d warnings after a new drift, want 3 (at once)", n)
	}
	if !strings.Contains(logs.String(), "vault_minus_portal=45s") {
		t.Fatalf("warning does not say the skew: %s", logs.String())
	}
}

// TestClockSkewIgnoresSlowAnswers: an answer that took longer than
// skewMaxRoundTrip says too little about when Vault stamped it; a missing
// or broken Date header says nothing.
func TestClockSkewIgnoresSlowAnswers(t *testing.T) {
	k := &clockSkew{now: time.Now, warn: 30 * time.Second}
	at := time.Now()
	date := at.Add(time.Hour).UTC().Format(http.TimeFormat)
	k.observe(date, at, at.Add(3*time.Second))
	k.observe("", at, at)
	k.observe("yesterday", at, at)
	if k.known {
		t.Fatalf("skew taken from a slow or dateless answer: %s", k.skew)
	}
	k.observe(date, at, at.Add(10*time.Millisecond))
	if !k.known || k.skew < time.Hour-time.Second || k.skew > time.Hour+time.Second {
		t.Fatalf("skew %s, want about 1h", k.skew)
	}
}
