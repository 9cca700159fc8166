package portal

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/vault"
)

// SecretRotator is the portal's own AppRole secret id; *vault.Service
// implements it.
type SecretRotator interface {
	LookupSecretID(ctx context.Context) (*vault.SecretID, error)
	RotateSecretID(ctx context.Context, metadata string) (*vault.SecretID, error)
}

// systemActor is who the trail names for what the portal does by itself.
const systemActor = "certportal"

// secretIDLock is taken per secret id (by accessor): replicas sharing one
// secret id file rotate it once between them, while replicas that each have
// a secret id of their own (one file per host) each rotate theirs.
const secretIDLock = "approle-secret-id:"

// How often the secret id is looked at: at the latest every
// secretCheckMax (a file replaced by an operator shows in the metric within
// it), after a failure again within secretRetryMax, both scaled down for
// short-lived secret ids so that a third of the lifetime leaves many tries.
const (
	secretCheckMax = time.Hour
	secretRetryMax = time.Minute
	secretCheckMin = time.Second
)

// rotationState keeps what the secret id checks remember between runs.
type rotationState struct {
	mu sync.Mutex
	// lastFailure is the last failure recorded in the trail: a rotation
	// failing for the same reason every minute is recorded once.
	lastFailure string
	// unrecorded is a rotation Vault made whose record the store refused;
	// every check tries again (nothing is lost, and the secret id works
	// either way).
	unrecorded *rotationRecord
	lifetime   time.Duration // of the last secret id seen
}

type rotationRecord struct {
	outcome string
	details map[string]string
}

// RunSecretRotation looks after the portal's AppRole secret id until ctx
// ends: it exports its expiry and, at two thirds of its lifetime, issues the
// next one (CheckSecretID). Without a rotator (a narrower ServiceVault) it
// does nothing.
func (s *Service) RunSecretRotation(ctx context.Context) {
	if s.rotator == nil {
		return
	}
	for {
		wait := s.CheckSecretID(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// CheckSecretID looks up the secret id the portal logs in with, exports when
// it expires and rotates it when it is due, on one replica at a time. It
// returns when to look again. A secret id Vault no longer knows (expired, or
// destroyed by an operator) is not replaced: the portal alerts and an
// operator decides (docs/mfa.md, Recovery).
func (s *Service) CheckSecretID(ctx context.Context) time.Duration {
	s.flushRotationRecord(ctx)
	cur, err := s.rotator.LookupSecretID(ctx)
	if errors.Is(err, vault.ErrPermissionDenied) {
		// A service policy from before this check (rerun setup): say so
		// hourly, not every minute.
		s.log.WarnContext(ctx, "service identity: its policy does not allow looking up its secret id: no expiry metric and no rotation until `certportal setup` runs again", "err", err)
		return secretCheckMax
	}
	if err != nil {
		s.log.WarnContext(ctx, "service identity: cannot look up its secret id", "err", err)
		return s.secretRetry()
	}
	s.noteSecretID(cur)
	if !cur.Known {
		s.log.ErrorContext(ctx, "service identity: Vault does not know the secret id it logs in with (expired or destroyed): its next login will fail; run `certportal rotate-secret-id`")
		s.rotationFailed(ctx, "secret id unknown to Vault (expired or destroyed)", cur, nil)
		return s.secretRetry()
	}
	if wait, due := s.untilDue(cur); !due {
		return wait
	}
	unlock, ok, err := s.store.TryLock(ctx, secretIDLock+cur.Accessor)
	if err != nil {
		s.log.WarnContext(ctx, "service identity: secret id rotation lock", "err", err)
		return s.secretRetry()
	}
	if !ok {
		return s.secretRetry() // another replica is rotating this one
	}
	defer unlock()
	// Looked up again under the lock: the replica that held it may have
	// put a new secret id in the shared file meanwhile.
	if cur, err = s.rotator.LookupSecretID(ctx); err != nil {
		s.log.WarnContext(ctx, "service identity: cannot look up its secret id", "err", err)
		return s.secretRetry()
	}
	s.noteSecretID(cur)
	if wait, due := s.untilDue(cur); !due || !cur.Known {
		return max(wait, secretCheckMin)
	}
	host, _ := os.Hostname()
	meta, _ := json.Marshal(map[string]string{"created_by": "certportal serve", "host": host, "replaces": cur.Accessor})
	next, err := s.rotator.RotateSecretID(ctx, string(meta))
	if err != nil {
		if errors.Is(err, vault.ErrSecretIDNotWritable) {
			s.opts.Metrics.SecretIDRotation("not_writable")
			s.log.ErrorContext(ctx, "service identity: its secret id is due for rotation but is inline or read-only, so the portal only alerts: rotate it with `certportal rotate-secret-id` and update the secret before it expires",
				"expires", cur.Expires, "err", err)
			s.rotationFailed(ctx, "not writable: "+err.Error(), cur, nil)
			// Alerting hourly is enough: the metric carries the alarm.
			return min(max(s.lifetime()/30, secretCheckMin), secretCheckMax)
		}
		s.opts.Metrics.SecretIDRotation("failed")
		s.log.ErrorContext(ctx, "service identity: secret id rotation failed; the current one stays in use until it expires", "expires", cur.Expires, "err", err)
		s.rotationFailed(ctx, err.Error(), cur, nil)
		return s.secretRetry()
	}
	s.opts.Metrics.SecretIDRotation("rotated")
	s.noteSecretID(next)
	s.rotation.mu.Lock()
	s.rotation.lastFailure = ""
	s.rotation.mu.Unlock()
	s.recordRotation(ctx, audit.OutcomeSuccess, rotationDetails(cur, next, host, ""))
	wait, _ := s.untilDue(next)
	return wait
}

// untilDue says how long until id is due for rotation (capped at
// secretCheckMax), or that it is due now.
func (s *Service) untilDue(id *vault.SecretID) (time.Duration, bool) {
	at := id.RotateAt()
	if at.IsZero() {
		return secretCheckMax, false // never expires: nothing to rotate
	}
	wait := at.Sub(s.now())
	if wait <= 0 {
		return 0, true
	}
	return min(max(wait, secretCheckMin), secretCheckMax), false
}

func (s *Service) noteSecretID(id *vault.SecretID) {
	s.opts.Metrics.SecretIDExpiry(id.Expires, id.Known)
	if id.Known && !id.Expires.IsZero() {
		s.rotation.mu.Lock()
		s.rotation.lifetime = id.Expires.Sub(id.Created)
		s.rotation.mu.Unlock()
	}
}

func (s *Service) lifetime() time.Duration {
	s.rotation.mu.Lock()
	defer s.rotation.mu.Unlock()
	if s.rotation.lifetime <= 0 {
		return 30 * secretRetryMax
	}
	return s.rotation.lifetime
}

// secretRetry is the wait after a failed check: a thirtieth of the secret
// id's lifetime, between a second and a minute.
func (s *Service) secretRetry() time.Duration {
	return min(max(s.lifetime()/30, secretCheckMin), secretRetryMax)
}

func rotationDetails(cur, next *vault.SecretID, host, why string) map[string]string {
	d := map[string]string{"host": host}
	if cur != nil {
		d["old_accessor"] = cur.Accessor
		d["old_expires"] = formatExpiry(cur.Expires, cur.Known)
		d["file"] = cur.Path
	}
	if next != nil {
		d["new_accessor"] = next.Accessor
		d["new_expires"] = formatExpiry(next.Expires, true)
	}
	if why != "" {
		d["why"] = why
	}
	return d
}

func formatExpiry(t time.Time, known bool) string {
	switch {
	case !known:
		return "unknown to Vault"
	case t.IsZero():
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// rotationFailed records a failed (or impossible) rotation once per reason.
func (s *Service) rotationFailed(ctx context.Context, why string, cur *vault.SecretID, next *vault.SecretID) {
	s.rotation.mu.Lock()
	same := s.rotation.lastFailure == why
	s.rotation.lastFailure = why
	s.rotation.mu.Unlock()
	if same {
		return
	}
	host, _ := os.Hostname()
	s.recordRotation(ctx, audit.OutcomeFailure, rotationDetails(cur, next, host, why))
}

func (s *Service) recordRotation(ctx context.Context, outcome string, details map[string]string) {
	if err := s.record(ctx, s.newEvent(ctx, systemActor, "", audit.ActionSecretIDRotate, outcome, "", details)); err != nil {
		s.log.ErrorContext(ctx, "service identity: the secret id rotation could not be recorded; retrying at the next check", "outcome", outcome, "err", err)
		s.rotation.mu.Lock()
		s.rotation.unrecorded = &rotationRecord{outcome: outcome, details: details}
		s.rotation.mu.Unlock()
	}
}

func (s *Service) flushRotationRecord(ctx context.Context) {
	s.rotation.mu.Lock()
	r := s.rotation.unrecorded
	s.rotation.unrecorded = nil
	s.rotation.mu.Unlock()
	if r != nil {
		s.recordRotation(ctx, r.outcome, r.details)
	}
}
