package portal

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/postgres"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv/pgtest"
	"github.com/certportal/certportal/internal/vault"
)

// revokeGate is issuedAround whose revocations wait for release, so a
// test can act while the background job revokes after its run is done.
type revokeGate struct {
	*issuedAround
	revoking, release chan struct{}
}

func (v *revokeGate) Revoke(ctx context.Context, mount, serial string) error {
	if v.revoking != nil {
		v.revoking <- struct{}{}
		<-v.release
	}
	return v.issuedAround.Revoke(ctx, mount, serial)
}

// hookStore is a replica's store that runs a hook at the moment its
// replica checks the reconciliation's lock (TryLock or LockHeld), or once
// it has read the runs: what another replica does at that very moment.
type hookStore struct {
	Store
	onLock, onRuns func()
}

func (h *hookStore) TryLock(ctx context.Context, name string) (func(), bool, error) {
	unlock, ok, err := h.Store.TryLock(ctx, name)
	if f := h.onLock; f != nil && name == reconcileLock {
		h.onLock = nil
		f()
	}
	return unlock, ok, err
}

func (h *hookStore) LockHeld(ctx context.Context, name string) (bool, error) {
	held, err := h.Store.LockHeld(ctx, name)
	if f := h.onLock; f != nil && name == reconcileLock {
		h.onLock = nil
		f()
	}
	return held, err
}

func (h *hookStore) ReconcileRuns(ctx context.Context) (*store.ReconcileRun, *store.ReconcileRun, error) {
	latest, done, err := h.Store.ReconcileRuns(ctx)
	if f := h.onRuns; f != nil {
		h.onRuns = nil
		f()
	}
	return latest, done, err
}

// reconcileReplicas opens two replicas on one store of the kind named
// (SQLite: one file; PostgreSQL: one database); the first one's store
// runs hooks.
func reconcileReplicas(t *testing.T, kind string, vlt ServiceVault) (a, b *Service, ah *hookStore) {
	t.Helper()
	ctx := context.Background()
	var open func() Store
	switch kind {
	case "sqlite":
		path := t.TempDir() + "/p.db"
		open = func() Store {
			st, err := sqlite.Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}
	case "postgres":
		dsn := pgtest.NewDatabase(t, pgtest.Start(t))
		open = func() Store {
			st, err := postgres.Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}
	}
	replica := func(st Store) *Service {
		return NewService(nil, vlt, st, Options{UserpassMount: "userpass", PKIMount: "pki", UserPolicy: "certportal-user",
			EmailDomain: "example.com", Metrics: metrics.New(), Reconcile: ReconcileOptions{AutoRevokeAfter: time.Hour}},
			slog.New(slog.DiscardHandler))
	}
	ah = &hookStore{Store: open()}
	return replica(ah), replica(open()), ah
}

// TestReconcileStartNeverDropped: a start an auditor asks for is either
// refused (409, error.reconcile_busy) or run, on SQLite and PostgreSQL,
// two replicas on one store: refused while the background job still
// holds the lock revoking after its run is done (on either replica, not
// accepted and dropped); a page view at the moment of a start on another
// replica (with a stale running row, which has the page check the lock)
// makes neither an auditor's start nor the scheduled job fail; and a run
// that finishes while a page is read is not shown as interrupted.
func TestReconcileStartNeverDropped(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now()
			cn := "alice@example.com"
			vlt := &revokeGate{issuedAround: &issuedAround{certs: map[string]*vault.StoredCertificate{
				vaultSerial("3c-01"): {Certificate: &x509.Certificate{
					SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, EmailAddresses: []string{cn},
					NotBefore: now.Add(-3 * time.Hour), NotAfter: now.Add(24 * time.Hour),
					ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
				}}}}, revoking: make(chan struct{}), release: make(chan struct{})}
			vlt.set("alice")
			a, b, ah := reconcileReplicas(t, kind, vlt)
			auditor := &Identity{Username: "audrey", Roles: []Role{RoleAuditor}}
			busy := func(err error) bool {
				var pe *Error
				return errors.As(err, &pe) && pe.Code == EConflict && pe.Message == "error.reconcile_busy"
			}
			latest := func() *store.ReconcileRun {
				t.Helper()
				l, _, err := b.store.ReconcileRuns(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}

			// The scheduled job on a: its run is done, it revokes.
			jobDone := make(chan error, 1)
			go func() {
				res, err := a.ReconcileJob(ctx)
				if err == nil && res.Revoked != 1 {
					err = errors.New("the job revoked nothing")
				}
				jobDone <- err
			}()
			<-vlt.revoking
			if l := latest(); l == nil || l.State != store.RunDone {
				t.Fatalf("newest run while the job revokes: %+v, want done", l)
			}
			for name, s := range map[string]*Service{"the job's replica": a, "another replica": b} {
				if err := s.RequestReconcile(ctx, auditor); !busy(err) {
					t.Errorf("start on %s while the job revokes: %v, want error.reconcile_busy", name, err)
				}
				st, err := s.ReconcileStatus(ctx, auditor)
				if err != nil || !st.Active || st.Stale {
					t.Errorf("status on %s while the job revokes: %+v %v, want active", name, st, err)
				}
			}
			vlt.revoking = nil
			close(vlt.release)
			if err := <-jobDone; err != nil {
				t.Fatalf("reconcile job: %v", err)
			}

			// Once it is done a start is taken, and runs.
			if err := b.RequestReconcile(ctx, auditor); err != nil {
				t.Fatalf("start after the job: %v", err)
			}
			before := latest().ID
			runQueued(t, b)
			if l := latest(); l.ID == before || l.State != store.RunDone {
				t.Fatalf("the started run: %+v, want a new run done", l)
			}

			// A stale running row (its replica stopped): a page view on a
			// at the moment b starts a run does not make the start fail.
			stale := func() {
				t.Helper()
				if _, err := b.store.StartReconcileRun(ctx, &store.ReconcileRun{By: "gone", State: store.RunRunning, StartedAt: now}); err != nil {
					t.Fatal(err)
				}
			}
			stale()
			var startErr error
			started := false
			ah.onLock = func() {
				started = true
				if startErr = b.RequestReconcile(ctx, auditor); startErr == nil {
					runQueued(t, b)
				}
			}
			ah.onRuns = nil
			withHook := func(what string) {
				t.Helper()
				if _, err := a.ReconcileStatus(ctx, auditor); err != nil {
					t.Fatalf("%s: status: %v", what, err)
				}
				if !started {
					t.Fatalf("%s: the status read never checked the lock", what)
				}
			}
			withHook("auditor's start")
			if startErr != nil {
				t.Errorf("a start on b while a's page is read: %v", startErr)
			}
			if l := latest(); l.State != store.RunDone || l.By != "audrey" {
				t.Errorf("newest run after b's start: %+v, want audrey's, done", l)
			}
			stale()
			started = false
			var job *ReconcileJobResult
			ah.onLock = func() {
				started = true
				job, startErr = b.ReconcileJob(ctx)
			}
			withHook("scheduled job")
			if startErr != nil || job == nil || job.Skipped {
				t.Errorf("the scheduled job on b while a's page is read: %+v %v, want it run", job, startErr)
			}
			if l := latest(); l.State != store.RunDone || l.By != ReconcileActor {
				t.Errorf("newest run after the job: %+v, want the job's, done", l)
			}

			// A live run on b that finishes between a's reading the runs
			// and checking the lock is shown done, not interrupted.
			unlock, ok, err := b.store.TryLock(ctx, reconcileLock)
			if err != nil || !ok {
				t.Fatalf("lock: %v %v", ok, err)
			}
			run := &store.ReconcileRun{By: "audrey", State: store.RunRunning, StartedAt: now}
			if run.ID, err = b.store.StartReconcileRun(ctx, run); err != nil {
				t.Fatal(err)
			}
			ah.onRuns = func() {
				run.State, run.FinishedAt = store.RunDone, now.Add(time.Second)
				if err := b.store.UpdateReconcileRun(ctx, run); err != nil {
					t.Error(err)
				}
				unlock()
			}
			st, err := a.ReconcileStatus(ctx, auditor)
			if err != nil {
				t.Fatal(err)
			}
			if st.Stale || st.Latest == nil || st.Latest.ID != run.ID || st.Latest.State != store.RunDone {
				t.Errorf("a run that finished while the page was read: latest %+v stale %v, want it done, not interrupted", st.Latest, st.Stale)
			}
		})
	}
}

// runQueued runs the reconciliation s's runner has been asked for, as
// RunReconciler does.
func runQueued(t *testing.T, s *Service) {
	t.Helper()
	if _, err := s.runRequested(context.Background(), <-s.reconcileReq); err != nil {
		t.Errorf("the requested run: %v", err)
	}
}
