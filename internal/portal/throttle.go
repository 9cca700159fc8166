package portal

import (
	"net/netip"
	"sync"
	"time"
)

// loginThrottle counts failed logins per client address in fixed windows and
// refuses further attempts from an address over the limit until its window
// ends, without asking Vault. Vault's own lockout protects each account;
// this protects the accounts together from one address trying one password
// on many of them.
//
// IPv6 clients are counted per /64, the block one host is usually given.
// The table is bounded: when full, expired windows are dropped; if it is
// still full, a new address is not tracked (Vault's lockout still applies)
// rather than the memory growing without end.
type loginThrottle struct {
	limit  int
	window time.Duration

	mu      sync.Mutex
	entries map[netip.Prefix]*throttleWindow
}

type throttleWindow struct {
	start    time.Time
	failures int
}

const throttleMaxEntries = 100_000

func newLoginThrottle(limit int, window time.Duration) *loginThrottle {
	if limit <= 0 || window <= 0 {
		return nil // off
	}
	return &loginThrottle{limit: limit, window: window, entries: map[netip.Prefix]*throttleWindow{}}
}

func throttleKey(ip string) (netip.Prefix, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

// allow reports whether ip may try to log in now and, when not, how long
// until it may.
func (t *loginThrottle) allow(ip string, now time.Time) (bool, time.Duration) {
	if t == nil {
		return true, 0
	}
	k, ok := throttleKey(ip)
	if !ok {
		return true, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.entries[k]
	if w == nil || now.Sub(w.start) >= t.window {
		return true, 0
	}
	if w.failures >= t.limit {
		return false, w.start.Add(t.window).Sub(now)
	}
	return true, 0
}

// fail counts a failed login from ip.
func (t *loginThrottle) fail(ip string, now time.Time) {
	if t == nil {
		return
	}
	k, ok := throttleKey(ip)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.entries[k]
	if w == nil || now.Sub(w.start) >= t.window {
		if w == nil && len(t.entries) >= throttleMaxEntries {
			for key, e := range t.entries {
				if now.Sub(e.start) >= t.window {
					delete(t.entries, key)
				}
			}
			if len(t.entries) >= throttleMaxEntries {
				return
			}
		}
		w = &throttleWindow{start: now}
		t.entries[k] = w
	}
	w.failures++
}
