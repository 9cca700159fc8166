package portal

import (
	"context"
	"sync"
	"time"

	"github.com/certportal/certportal/internal/audit"
)

// deniedLimiter turns a burst of refused requests from one user into two
// events: the first refusal in a window is recorded at once; the rest are
// counted and recorded as one event with their count when the window
// closes (or when the portal stops). Any logged-in employee can send
// refused requests as fast as the network carries them, and one event each
// would let them fill the trail.
type deniedLimiter struct {
	window time.Duration
	mu     sync.Mutex
	open   map[string]*deniedWindow
}

// deniedMaxKeys bounds the table; past it every refusal is recorded.
const deniedMaxKeys = 10000

type deniedWindow struct {
	actor string
	start time.Time
	count int    // refusals after the first
	last  string // what the last of them asked for
	info  RequestInfo
}

// admit reports whether this refusal is to be recorded now, and returns a
// closed window with uncounted refusals to record first.
func (l *deniedLimiter) admit(key, actor, what string, info RequestInfo, now time.Time) (bool, *deniedWindow) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.open[key]
	if w != nil && now.Sub(w.start) < l.window {
		w.count++
		w.last, w.info = what, info
		return false, nil
	}
	var closed *deniedWindow
	if w != nil && w.count > 0 {
		closed = w
	}
	if w != nil || len(l.open) < deniedMaxKeys {
		l.open[key] = &deniedWindow{actor: actor, start: now}
	}
	return true, closed
}

// closed takes the windows that ended by now (all of them when all).
func (l *deniedLimiter) closed(now time.Time, all bool) []*deniedWindow {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*deniedWindow
	for k, w := range l.open {
		if all || now.Sub(w.start) >= l.window {
			delete(l.open, k)
			if w.count > 0 {
				out = append(out, w)
			}
		}
	}
	return out
}

// RecordDenied records an access refused by the web layer (wrong role) or
// by the service (someone else's certificate), rate-limited per user.
func (s *Service) RecordDenied(ctx context.Context, id *Identity, what string) {
	actor := ""
	if id != nil {
		actor = id.Username
	}
	ri := RequestInfoFrom(ctx)
	key := "user:" + actor
	if actor == "" {
		key = "ip:" + ri.ClientIP
	}
	record, closed := s.denied.admit(key, actor, what, ri, s.now())
	if closed != nil {
		s.recordDeniedCount(ctx, closed)
	}
	if !record {
		return
	}
	if err := s.record(ctx, s.newEvent(ctx, actor, actor, audit.ActionAccessDenied, audit.OutcomeDenied, "", map[string]string{"path": what})); err != nil {
		s.log.ErrorContext(ctx, "audit write failed for a denied access", "err", err)
	}
}

// recordDeniedCount records the refusals a window counted after its first.
func (s *Service) recordDeniedCount(ctx context.Context, w *deniedWindow) {
	ctx = WithRequestInfo(context.WithoutCancel(ctx), w.info)
	e := s.newEvent(ctx, w.actor, w.actor, audit.ActionAccessDenied, audit.OutcomeDenied, "", map[string]string{
		"count": itoa(w.count), "last_path": w.last, "window_start": fmtTime(w.start), "window": s.denied.window.String(),
		"note": "further refusals of this user in the window after the first, recorded once",
	})
	if err := s.record(ctx, e); err != nil {
		s.log.ErrorContext(ctx, "audit write failed for counted denied accesses", "user", w.actor, "count", w.count, "err", err)
	}
}

// Run does the service's background work until ctx ends: it records the
// counted refusals of closed windows and retries unrecorded revocations.
// When ctx ends it records whatever is pending before returning; the
// caller closes the store only after Run has returned.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			for _, w := range s.denied.closed(s.now(), true) {
				s.recordDeniedCount(final, w)
			}
			s.retryRevocations(final, true)
			return
		case <-t.C:
			for _, w := range s.denied.closed(s.now(), false) {
				s.recordDeniedCount(ctx, w)
			}
			s.retryRevocations(ctx, false)
		}
	}
}
