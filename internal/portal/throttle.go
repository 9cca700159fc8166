package portal

import (
	"net/netip"
	"sync"
	"time"
)

// loginThrottle limits login attempts per client address in fixed windows
// and refuses further attempts from an address over the limit until its
// window ends, without asking Vault. Vault's own lockout protects each
// account; this protects the accounts together from one address trying one
// password on many of them.
//
// An attempt counts from the moment it is let through, before Vault answers,
// so a burst of concurrent requests cannot slip past the limit while the
// first ones wait on Vault; an attempt that turns out not to be a wrong
// password (a success, Vault unavailable) is taken back.
//
// IPv6 clients are counted per /64, the block one host is usually given.
// The table is bounded: when full, expired windows are swept (at most ten
// times a window); if it is still full, a new address is not tracked —
// Vault's lockout still applies — rather than the memory growing without end.
type loginThrottle struct {
	limit  int
	window time.Duration

	mu        sync.Mutex
	entries   map[netip.Prefix]*throttleWindow
	lastSweep time.Time
}

type throttleWindow struct {
	start    time.Time
	attempts int
	refused  bool // a refusal was already recorded in this window
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

// throttleVerdict is what attempt decided.
type throttleVerdict struct {
	allowed      bool
	retryAfter   time.Duration // when refused
	firstRefusal bool          // the first refusal in this window: record it
}

// attempt decides, in one step, whether ip may try a password now, and if
// so counts the attempt.
func (t *loginThrottle) attempt(ip string, now time.Time) throttleVerdict {
	if t == nil {
		return throttleVerdict{allowed: true}
	}
	k, ok := throttleKey(ip)
	if !ok {
		return throttleVerdict{allowed: true}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.entries[k]
	if w == nil || now.Sub(w.start) >= t.window {
		if w == nil && len(t.entries) >= throttleMaxEntries && !t.makeRoom(now) {
			return throttleVerdict{allowed: true} // untracked; Vault's lockout still applies
		}
		w = &throttleWindow{start: now}
		t.entries[k] = w
	}
	if w.attempts >= t.limit {
		first := !w.refused
		w.refused = true
		return throttleVerdict{retryAfter: w.start.Add(t.window).Sub(now), firstRefusal: first}
	}
	w.attempts++
	return throttleVerdict{allowed: true}
}

// makeRoom sweeps expired windows, at most ten times a window, and reports
// whether there is room for a new address.
func (t *loginThrottle) makeRoom(now time.Time) bool {
	if now.Sub(t.lastSweep) >= t.window/10 {
		t.lastSweep = now
		for key, e := range t.entries {
			if now.Sub(e.start) >= t.window {
				delete(t.entries, key)
			}
		}
	}
	return len(t.entries) < throttleMaxEntries
}

// refund takes back an attempt that was not a wrong password.
func (t *loginThrottle) refund(ip string, now time.Time) {
	if t == nil {
		return
	}
	k, ok := throttleKey(ip)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if w := t.entries[k]; w != nil && now.Sub(w.start) < t.window && w.attempts > 0 {
		w.attempts--
	}
}
