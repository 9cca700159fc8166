package portal

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

// A revocation Vault performed but the store refused to record is never
// dropped. Three things see to it, in order:
//
//  1. revoke records an intent event before it asks Vault; if the trail
//     refuses that, Vault is not asked (fail closed). So every revocation
//     Vault performs has at least its intent in the trail, whoever acted
//     and with which ticket.
//  2. If the record after Vault's answer fails, the revocation goes to this
//     outbox, which retries it with backoff until the store takes it
//     (logged at error level on every failure, and once it succeeds).
//  3. If the portal stops first, or the outbox is full, the revocation is
//     logged as unrecorded, and reconciliation shows it: the inventory
//     says active where Vault says revoked (state_mismatch).

const (
	outboxMax        = 1000
	outboxFirstRetry = time.Second
	outboxMaxRetry   = time.Minute
)

// pendingRevocation is a revocation waiting for its record.
type pendingRevocation struct {
	actor, action string
	cert          *store.Certificate
	rev           store.Revocation
	details       map[string]string
	info          RequestInfo
	attempts      int
	next          time.Time
	wait          time.Duration
}

type revocationOutbox struct {
	mu      sync.Mutex
	pending []*pendingRevocation
}

// add queues p; false when the outbox is full.
func (o *revocationOutbox) add(p *pendingRevocation, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.pending) >= outboxMax {
		return false
	}
	p.wait = outboxFirstRetry
	p.next = now.Add(p.wait)
	o.pending = append(o.pending, p)
	return true
}

// due takes the entries whose retry time has come (all of them when all).
func (o *revocationOutbox) due(now time.Time, all bool) []*pendingRevocation {
	o.mu.Lock()
	defer o.mu.Unlock()
	var due, keep []*pendingRevocation
	for _, p := range o.pending {
		if all || !now.Before(p.next) {
			due = append(due, p)
		} else {
			keep = append(keep, p)
		}
	}
	o.pending = keep
	return due
}

func (o *revocationOutbox) requeue(p *pendingRevocation, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p.wait = min(2*p.wait, outboxMaxRetry)
	p.next = now.Add(p.wait)
	o.pending = append(o.pending, p)
}

// queueUnrecorded hands a revocation whose record failed to the outbox.
func (s *Service) queueUnrecorded(ctx context.Context, p *pendingRevocation) {
	if s.outbox.add(p, s.now()) {
		return
	}
	s.log.ErrorContext(ctx, "revocation outbox full: this revocation is NOT being retried; the trail holds its intent event and reconciliation shows it as state_mismatch",
		"serial", p.cert.Serial, "user", p.cert.Username, "by", p.rev.By, "ticket", p.rev.Ticket)
}

// retryRevocations tries to record every due revocation once; at shutdown
// (final) every pending one, and what still fails is logged as lost to the
// inventory.
func (s *Service) retryRevocations(ctx context.Context, final bool) {
	for _, p := range s.outbox.due(s.now(), final) {
		p.attempts++
		details := map[string]string{"recorded_late": "true", "revoked_at": fmtTime(p.rev.At), "attempt": itoa(p.attempts)}
		for k, v := range p.details {
			details[k] = v
		}
		rctx := WithRequestInfo(ctx, p.info)
		ev := s.newEvent(rctx, p.actor, p.cert.Username, p.action, audit.OutcomeSuccess, p.cert.Serial, details)
		err := s.store.RecordRevocation(rctx, p.cert.Serial, p.rev, ev)
		switch {
		case err == nil:
			s.log.WarnContext(rctx, "revocation recorded after retry", "serial", p.cert.Serial, "user", p.cert.Username, "attempts", p.attempts)
		case errors.Is(err, store.ErrNotFound):
			s.log.ErrorContext(rctx, "revocation not recorded: the inventory row is gone; the trail holds its intent event", "serial", p.cert.Serial)
		case final:
			s.log.ErrorContext(rctx, "portal stopping with a revocation still unrecorded: Vault revoked it, the trail holds its intent event, reconciliation shows it as state_mismatch",
				"serial", p.cert.Serial, "user", p.cert.Username, "by", p.rev.By, "ticket", p.rev.Ticket, "attempts", p.attempts, "err", err)
		default:
			s.opts.Metrics.AuditFailure()
			s.log.ErrorContext(rctx, "revocation still not recorded; retrying", "serial", p.cert.Serial, "attempts", p.attempts, "next_in", (2 * p.wait).String(), "err", err)
			s.outbox.requeue(p, s.now())
		}
	}
}
