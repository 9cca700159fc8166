package portal

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/store/sqlite"
)

func deviceService(key string, now *time.Time) *Service {
	s := NewService(nil, nil, nil, Options{LoginUserMaxFailures: 5, LoginUserWindow: 5 * time.Minute,
		LoginDeviceMaxFailures: 3, DeviceTTL: 24 * time.Hour, DeviceKey: []byte(key), NameKey: []byte(key)},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.now = func() time.Time { return *now }
	return s
}

// TestDeviceTokenChecks: a device token is honoured only for the name it was
// issued to, untouched, within its lifetime and under the same key.
func TestDeviceTokenChecks(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s := deviceService(strings.Repeat("k", 32), &now)
	tok := s.DeviceToken(" Alice")
	if strings.Contains(strings.ToLower(tok), "alice") || len(tok) > 120 {
		t.Fatalf("token %q names the user or is long", tok)
	}
	nonce, ok := s.checkDevice(tok, "alice", now)
	if !ok || nonce == "" {
		t.Fatal("a fresh token for alice is refused")
	}
	if other := s.DeviceToken("alice"); other == tok {
		t.Fatal("two logins got the same token")
	}
	if k := s.deviceAttemptKey(nonce); !strings.HasPrefix(k, "device:") || strings.Contains(k, nonce) {
		t.Fatalf("device count key %q holds the nonce", k)
	}
	parts := strings.Split(tok, ".")
	flip := func(s string) string {
		b := []byte(s)
		if b[0] == 'A' {
			b[0] = 'B'
		} else {
			b[0] = 'A'
		}
		return string(b)
	}
	other := deviceService(strings.Repeat("x", 32), &now)
	for name, c := range map[string]struct {
		tok, user string
		at        time.Time
		svc       *Service
	}{
		"another user":      {tok, "bob", now, s},
		"empty":             {"", "alice", now, s},
		"nonce changed":     {strings.Join([]string{parts[0], flip(parts[1]), parts[2], parts[3]}, "."), "alice", now, s},
		"issued-at changed": {strings.Join([]string{parts[0], parts[1], "1" + parts[2], parts[3]}, "."), "alice", now, s},
		"mac changed":       {strings.Join([]string{parts[0], parts[1], parts[2], flip(parts[3])}, "."), "alice", now, s},
		"mac cut":           {strings.Join([]string{parts[0], parts[1], parts[2], parts[3][:20]}, "."), "alice", now, s},
		"other version":     {"v2." + strings.Join(parts[1:], "."), "alice", now, s},
		"extra part":        {tok + ".x", "alice", now, s},
		"expired":           {tok, "alice", now.Add(24 * time.Hour), s},
		"from the future":   {tok, "alice", now.Add(-time.Hour), s},
		"another key":       {tok, "alice", now, other},
		"devices off":       {tok, "alice", now, NewService(nil, nil, nil, Options{DeviceKey: []byte(strings.Repeat("k", 32))}, s.log)},
	} {
		if _, ok := c.svc.checkDevice(c.tok, c.user, c.at); ok {
			t.Errorf("%s: token honoured", name)
		}
	}
	if _, ok := s.checkDevice(tok, "alice", now.Add(24*time.Hour-time.Second)); !ok {
		t.Error("refused just before its end")
	}
}

// TestDeviceExemptionCounts walks takeUserAttempt's decisions on a real
// store: a stranger holds the name at its limit; a valid device token gets
// past it for its own 3 failures, within the name's limit + 3; a spent or
// invalid token is a stranger's.
func TestDeviceExemptionCounts(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s := deviceService(strings.Repeat("k", 32), &now)
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/p.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s.store = st
	ctx := context.Background()
	take := func(device string) (bool, bool) {
		t.Helper()
		_, dk, err := s.takeUserAttempt(ctx, "alice", device)
		if err != nil && ErrorCode(err) != ETooMany {
			t.Fatal(err)
		}
		return err == nil, dk != ""
	}
	for i := 0; i < 5; i++ {
		if ok, _ := take(""); !ok {
			t.Fatalf("stranger's attempt %d refused", i+1)
		}
	}
	if ok, _ := take(""); ok {
		t.Fatal("stranger past the limit")
	}
	laptop, phone := s.DeviceToken("alice"), s.DeviceToken("alice")
	if ok, _ := take(s.DeviceToken("bob")); ok {
		t.Fatal("bob's token exempted a login as alice")
	}
	for i := 0; i < 3; i++ {
		if ok, trusted := take(laptop); !ok || !trusted {
			t.Fatalf("laptop's attempt %d: allowed %v, trusted %v", i+1, ok, trusted)
		}
	}
	if ok, _ := take(laptop); ok {
		t.Fatal("laptop past its own 3")
	}
	if ok, _ := take(phone); ok {
		t.Fatal("phone past the name's limit + 3 (5 + 3 counted)")
	}
	// A window after the last counted attempt everything is forgotten.
	now = now.Add(5 * time.Minute)
	if ok, trusted := take(laptop); !ok || !trusted {
		t.Fatalf("laptop after the window: allowed %v, trusted %v", ok, trusted)
	}
}
