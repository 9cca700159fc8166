package portal

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// loginThrottle limits login attempts per client address in fixed windows
// and refuses further attempts from an address over the limit until its
// window ends, without asking Vault. It protects the accounts together from
// one address (or one network) trying one password on many of them; the
// per-username limit (usernameThrottle) protects each account.
//
// An attempt counts from the moment it is let through, before Vault answers,
// so a burst of concurrent requests cannot slip past the limit while the
// first ones wait on Vault; an attempt that turns out not to be a wrong
// password (a success, Vault unavailable) is taken back.
//
// An address is counted under several prefixes at once: IPv4 per /32 and
// IPv6 per /64 (the block one host is usually given) with the base limit,
// and under each wider network of NetworkLimits (an IPv6 /56 and /48, an
// IPv4 /24) with that network's own, higher limit — otherwise one /48 could
// try 65,536 times the base limit by moving to a fresh /64 every few tries.
// An attempt is let through only if every prefix has room, and counts
// against all of them.
//
// The table is bounded. When full, expired windows are swept (at most ten
// times a window); if it is still full, an address that is not tracked yet
// is refused until windows end — throttled, not forgotten: letting it
// through untracked would make filling the table a way around the limit.
// Addresses already tracked carry on as usual.
type loginThrottle struct {
	limit      int
	window     time.Duration
	networks   []NetworkLimit
	maxEntries int

	mu        sync.Mutex
	entries   map[netip.Prefix]*throttleWindow
	lastSweep time.Time
	// fullRefused: a full-table refusal was already reported since the
	// last sweep (one recorded event per episode, not one per address).
	fullRefused bool
}

// NetworkLimit is the limit for a network wider than one address: failed
// logins all addresses of one IPv4 (IPv6 when IPv6) /Bits may make together
// per window.
type NetworkLimit struct {
	IPv6 bool
	Bits int
	Max  int
}

type throttleWindow struct {
	start    time.Time
	attempts int
	refused  bool // a refusal was already recorded in this window
}

const throttleMaxEntries = 100_000

func newLoginThrottle(limit int, window time.Duration, networks []NetworkLimit) *loginThrottle {
	if limit <= 0 || window <= 0 {
		return nil // off
	}
	return &loginThrottle{limit: limit, window: window, networks: networks, maxEntries: throttleMaxEntries,
		entries: map[netip.Prefix]*throttleWindow{}}
}

// throttleKey is one prefix ip is counted under, with its limit.
type throttleKey struct {
	prefix netip.Prefix
	limit  int
}

// keys returns the prefixes ip counts under, narrowest first; none for
// something that is not an address.
func (t *loginThrottle) keys(ip string) []throttleKey {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil
	}
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return nil
	}
	out := []throttleKey{{p, t.limit}}
	for _, n := range t.networks {
		if n.IPv6 != a.Is6() || n.Bits >= bits || n.Max <= 0 {
			continue
		}
		if p, err := a.Prefix(n.Bits); err == nil {
			out = append(out, throttleKey{p, n.Max})
		}
	}
	return out
}

// throttleVerdict is what attempt decided.
type throttleVerdict struct {
	allowed      bool
	retryAfter   time.Duration // when refused
	firstRefusal bool          // the first refusal in this window: record it
	tableFull    bool          // refused only because the table is full
	entries      int           // prefixes tracked after this decision
}

// attempt decides, in one step, whether ip may try a password now, and if
// so counts the attempt under each of its prefixes.
func (t *loginThrottle) attempt(ip string, now time.Time) throttleVerdict {
	if t == nil {
		return throttleVerdict{allowed: true}
	}
	keys := t.keys(ip)
	if len(keys) == 0 {
		return throttleVerdict{allowed: true}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	windows := make([]*throttleWindow, len(keys))
	missing := 0
	var refusedBy *throttleWindow
	for i, k := range keys {
		w := t.entries[k.prefix]
		if w != nil && now.Sub(w.start) >= t.window {
			w = nil // expired: starts afresh if the attempt is let through
		}
		windows[i] = w
		if w == nil {
			if t.entries[k.prefix] == nil {
				missing++
			}
			continue
		}
		if w.attempts >= k.limit && (refusedBy == nil || w.start.Before(refusedBy.start)) {
			// The widest wait is the one that ends last; all windows
			// share a length, so that is the one that started first.
			refusedBy = w
		}
	}
	if refusedBy != nil {
		first := !refusedBy.refused
		refusedBy.refused = true
		return throttleVerdict{retryAfter: refusedBy.start.Add(t.window).Sub(now), firstRefusal: first, entries: len(t.entries)}
	}
	if missing > 0 && len(t.entries)+missing > t.maxEntries && !t.makeRoom(now, missing) {
		first := !t.fullRefused
		t.fullRefused = true
		return throttleVerdict{retryAfter: t.window / 10, firstRefusal: first, tableFull: true, entries: len(t.entries)}
	}
	for i, k := range keys {
		w := windows[i]
		if w == nil {
			w = &throttleWindow{start: now}
			t.entries[k.prefix] = w
		}
		w.attempts++
	}
	return throttleVerdict{allowed: true, entries: len(t.entries)}
}

// makeRoom sweeps expired windows, at most ten times a window, and reports
// whether there is room for n new prefixes.
func (t *loginThrottle) makeRoom(now time.Time, n int) bool {
	if now.Sub(t.lastSweep) >= t.window/10 {
		t.lastSweep = now
		t.fullRefused = false
		for key, e := range t.entries {
			if now.Sub(e.start) >= t.window {
				delete(t.entries, key)
			}
		}
	}
	return len(t.entries)+n <= t.maxEntries
}

// refund takes back an attempt that was not a wrong password.
func (t *loginThrottle) refund(ip string, now time.Time) {
	if t == nil {
		return
	}
	keys := t.keys(ip)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if w := t.entries[k.prefix]; w != nil && now.Sub(w.start) < t.window && w.attempts > 0 {
			w.attempts--
		}
	}
}

// throttleFullLog holds when the full address table was last logged (unix
// ms) and the refusals since: one error line per throttle window, however
// many attempts the full table refuses.
type throttleFullLog struct {
	last    atomic.Int64
	refused atomic.Int64
}

// throttled is what Login and CompleteLogin do with every verdict: the
// table's size and any full-table refusal go to /metrics, and a full table
// is logged as an error at most once per window (with the number refused
// since the last line), so that a flood of fresh addresses cannot also
// flood the log.
func (s *Service) throttled(ctx context.Context, v throttleVerdict) {
	if s.throttle == nil {
		return
	}
	s.opts.Metrics.LoginThrottleEntries(v.entries)
	if !v.tableFull {
		return
	}
	s.opts.Metrics.LoginThrottleFull()
	n := s.throttleFull.refused.Add(1)
	now := s.now().UnixMilli()
	last := s.throttleFull.last.Load()
	if last != 0 && now-last < s.throttle.window.Milliseconds() || !s.throttleFull.last.CompareAndSwap(last, now) {
		return
	}
	s.throttleFull.refused.Add(-n)
	s.log.ErrorContext(ctx, "login throttle table full: logins from addresses it does not track yet are refused (429) until windows end; many distinct addresses are trying to log in",
		"tracked", v.entries, "capacity", s.throttle.maxEntries, "refused_since_last_report", n, "window", s.throttle.window.String())
}
