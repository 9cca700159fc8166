package portal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/vault"
)

// Reconciliation compares Vault's certificates with the inventory. Vault's
// LIST gives serials only, and reading a certificate costs a request, so
// each serial is read once, ever: what was learned (subject, expiry,
// revocation, kind) is kept in the store (vault_certs), and a repeat run
// reads only the serials new since the last one, forgets those Vault no
// longer lists, and takes revocation from one LIST of Vault's revoked
// serials. The groups are computed in the database and kept with the run,
// so the page shows the last run at once while a new one runs in the
// background, on one replica at a time (the store's TryLock).
//
// The lock is the one truth of "a reconciliation is asked for or in
// progress", shared by every replica: RequestReconcile takes it when it
// accepts a start and hands it to the runner with the request, the run
// (or the scheduled job, through its revocations after the run is done)
// releases it at its end. So a start is either refused at once (409
// error.reconcile_busy: the lock is held, here or on another replica) or
// run; it is never accepted and then dropped. Status reads only look at
// the lock (LockHeld), never take it, so a page view cannot make a real
// start, or the scheduler's, find it busy.

// DefaultReconcileConcurrency is how many certificate reads a run keeps in
// flight towards Vault unless told otherwise.
const DefaultReconcileConcurrency = 8

const (
	reconcileLock = "reconcile"
	// reconcileChunk new serials are read from Vault, stored and counted
	// as progress at a time; reconcileLearnChunk are looked up in the
	// inventory at a time (most are the portal's own: one lookup and one
	// commit for thousands of them).
	reconcileChunk      = 500
	reconcileLearnChunk = 5000
	// reconcileCachePage cache rows (and mismatch candidates) are read at a
	// time.
	reconcileCachePage = 1000
)

// ErrReconcileBusy: another run holds the lock (on this replica or another).
var ErrReconcileBusy = errors.New("reconcile: a run is in progress")

// ReconcileStatus is what the page shows: the newest run (perhaps still
// running) and the newest finished one, whose entries it lists.
type ReconcileStatus struct {
	Latest, LastDone *store.ReconcileRun
	// Active: the reconciliation's lock is held, here or on another
	// replica: a run is asked for and about to start, is running, or the
	// scheduled job is revoking what its run found. The page then says so
	// instead of offering to start one (a start would be refused).
	Active bool
	// Stale: the newest run says running, has no FinishedAt, and nothing
	// holds the lock: its replica stopped. The next run records it as
	// interrupted.
	Stale bool
}

// Running reports whether the newest run has not finished.
func (st *ReconcileStatus) Running() bool {
	return st.Latest != nil && st.Latest.State == store.RunRunning
}

// Progress reports whether the running run knows how far it is: Vault's
// list is read and there are new serials to look up ("3 of 10"). Before
// that, or with nothing new, it has no count worth showing ("0 of 0").
func (st *ReconcileStatus) Progress() bool {
	return st.Running() && !st.Stale && st.Latest.ToRead > 0
}

// LastFailed is the newest run when it failed, for the page to say so.
func (st *ReconcileStatus) LastFailed() *store.ReconcileRun {
	if st.Latest != nil && st.Latest.State == store.RunFailed {
		return st.Latest
	}
	return nil
}

// ReconcileStatus returns the runs the page shows; no Vault call.
func (s *Service) ReconcileStatus(ctx context.Context, id *Identity) (*ReconcileStatus, error) {
	if err := s.requireAuditor(id); err != nil {
		return nil, err
	}
	unavailable := func(err error) error {
		return storeUnavailable(err)
	}
	latest, done, err := s.store.ReconcileRuns(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	held, err := s.store.LockHeld(ctx, reconcileLock)
	if err != nil {
		return nil, unavailable(err)
	}
	st := &ReconcileStatus{Latest: latest, LastDone: done, Active: held}
	if held || !unfinished(latest) {
		return st, nil
	}
	// The newest run said running and the lock is free: its replica
	// stopped, or it finished (its end is written before the lock is
	// released) between the two reads. Read the runs again to tell.
	if st.Latest, st.LastDone, err = s.store.ReconcileRuns(ctx); err != nil {
		return nil, unavailable(err)
	}
	switch {
	case !unfinished(st.Latest):
	case st.Latest.ID == latest.ID:
		st.Stale = true
	default:
		// A newer run started since the lock was looked at: it holds it.
		st.Active = true
	}
	return st, nil
}

// unfinished: run says running and has no end (a run whose FinishedAt is
// set is never stale, whatever its state says).
func unfinished(run *store.ReconcileRun) bool {
	return run != nil && run.State == store.RunRunning && run.FinishedAt.IsZero()
}

// ReconcileEntries pages through one group of a finished run, in serial
// order after after.
func (s *Service) ReconcileEntries(ctx context.Context, id *Identity, runID int64, group, after string, limit int) ([]ReconcileEntry, error) {
	if err := s.requireAuditor(id); err != nil {
		return nil, err
	}
	out, err := s.store.ReconcileResults(ctx, runID, group, after, limit)
	if err != nil {
		return nil, storeUnavailable(err)
	}
	return out, nil
}

// reconcileRequest is a start RequestReconcile accepted: who asked, and
// the reconciliation's lock, taken for the run.
type reconcileRequest struct {
	by     string
	unlock func()
}

// RequestReconcile asks for a run in the background (RunReconciler runs
// it). It takes the reconciliation's lock for the run there and then, so
// every replica sees the run as asked for (ReconcileStatus.Active) until
// it ends, and no other start, here or on another replica, can slip in
// between. While the lock is held (a run asked for or running, or the
// scheduled job still revoking after its run is done, on this replica or
// another) a start is refused (EConflict, error.reconcile_busy): a second
// click must not queue a second full run behind the first, nor be
// accepted and then dropped without a word.
func (s *Service) RequestReconcile(ctx context.Context, id *Identity) error {
	if err := s.requireAuditor(id); err != nil {
		return err
	}
	if _, err := s.auditorVault(); err != nil {
		return err
	}
	unlock, ok, err := s.store.TryLock(ctx, reconcileLock)
	if err != nil {
		return storeUnavailable(err)
	}
	if !ok {
		return &Error{Code: EConflict, Message: "error.reconcile_busy", Err: ErrReconcileBusy}
	}
	select {
	case s.reconcileReq <- reconcileRequest{by: id.Username, unlock: unlock}:
		return nil
	default:
		// Cannot be while the lock is ours (a request queued holds it),
		// but a start is never dropped: refused, with a word.
		unlock()
		return &Error{Code: EConflict, Message: "error.reconcile_busy", Err: errors.New("the reconciliation queue is full")}
	}
}

// RunReconciler runs the requested reconciliations one after another until
// ctx ends; a run in progress is cancelled with it (and recorded failed).
// A request still queued then is let go: its lock is released.
func (s *Service) RunReconciler(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case req := <-s.reconcileReq:
					req.unlock()
				default:
					return
				}
			}
		case req := <-s.reconcileReq:
			s.runRequested(ctx, req)
		}
	}
}

// runRequested runs one accepted start under the lock RequestReconcile
// took for it, and releases the lock at its end.
func (s *Service) runRequested(ctx context.Context, req reconcileRequest) (*store.ReconcileRun, error) {
	defer req.unlock()
	av, err := s.auditorVault()
	var run *store.ReconcileRun
	if err == nil {
		run, err = s.reconcileLocked(ctx, av, req.by, true)
	}
	if err != nil {
		s.log.ErrorContext(ctx, "reconciliation failed", "by", req.by, "err", err)
	}
	return run, err
}

// ReconcileNow runs one reconciliation to its end and returns it; by names
// who asked (an auditor, or a scheduler). ErrReconcileBusy when another
// run holds the lock. Meant to be called from a scheduler as well.
func (s *Service) ReconcileNow(ctx context.Context, by string) (*store.ReconcileRun, error) {
	av, err := s.auditorVault()
	if err != nil {
		return nil, err
	}
	unlock, ok, err := s.store.TryLock(ctx, reconcileLock)
	if err != nil {
		return nil, fmt.Errorf("reconcile: lock: %w", err)
	}
	if !ok {
		return nil, ErrReconcileBusy
	}
	defer unlock()
	return s.reconcileLocked(ctx, av, by, true)
}

// reconcileLocked is ReconcileNow for a caller that holds reconcileLock
// already (a scheduler that does more under the same lock, such as
// revoking what the run found; it then reads the run's entries with
// ReconcileResults). record: put the finished run in the trail
// (audit.reconcile).
func (s *Service) reconcileLocked(ctx context.Context, av AuditorVault, by string, record bool) (*store.ReconcileRun, error) {
	// The run before this one (read before this one is recorded): its
	// results are kept when nothing changed since it started.
	prev, _, err := s.store.ReconcileRuns(ctx)
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	run := &store.ReconcileRun{By: by, State: store.RunRunning, StartedAt: s.now()}
	if run.ID, err = s.store.StartReconcileRun(ctx, run); err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	// From here the page sees it running (its row, and the lock held).
	runErr := s.reconcile(ctx, av, run, prev)
	// The outcome is written even when ctx ended (shutdown): a run left
	// "running" would be shown as such.
	fin := context.WithoutCancel(ctx)
	run.FinishedAt = s.now()
	run.State = store.RunDone
	if runErr != nil {
		run.State = store.RunFailed
		run.Error = "error.store_unavailable"
		var pe *Error
		if errors.As(runErr, &pe) {
			run.Error = pe.Message
		}
	}
	if err := s.store.UpdateReconcileRun(fin, run); err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	if runErr != nil {
		return run, runErr
	}
	if err := s.store.PruneReconcileRuns(fin, run.ID); err != nil {
		s.log.WarnContext(ctx, "reconcile: old runs not pruned", "err", err)
	}
	s.log.InfoContext(ctx, "reconciliation done", "by", by, "vault_total", run.VaultTotal, "inventory_total", run.InventoryTotal,
		"new_serials", run.ToRead, "vault_reads", run.VaultReads, "vault_only", run.VaultOnly, "inventory_only", run.InventoryOnly,
		"expired_tidied", run.ExpiredTidied, "state_mismatch", run.StateMismatch, "known", run.Known, "kept_results_of", run.ResultsRun,
		"took", run.FinishedAt.Sub(run.StartedAt).String())
	if !record {
		return run, nil
	}
	if err := s.record(fin, s.newEvent(fin, by, "", audit.ActionReconcile, audit.OutcomeSuccess, "", runCounts(run))); err != nil {
		return run, err
	}
	return run, nil
}

// runCounts are a run's counts as the trail records them.
func runCounts(run *store.ReconcileRun) map[string]string {
	return map[string]string{
		"vault_only": itoa(run.VaultOnly), "inventory_only": itoa(run.InventoryOnly), "expired_tidied": itoa(run.ExpiredTidied),
		"state_mismatch": itoa(run.StateMismatch), "known": itoa(run.Known),
		"vault_total": itoa(run.VaultTotal), "inventory_total": itoa(run.InventoryTotal),
		"vault_reads": itoa(run.VaultReads)}
}

func (s *Service) reconcileConcurrency() int {
	if s.opts.ReconcileConcurrency > 0 {
		return s.opts.ReconcileConcurrency
	}
	return DefaultReconcileConcurrency
}

// reconcile is one run: bring the cache up to date with Vault, then let
// the database compute the groups, or keep prev's when nothing changed.
//
// Nothing changed means: prev (the run just before this one) finished;
// the inventory's change flag, claimed before anything else is looked at,
// was clear (no row inserted, updated or deleted since prev claimed it,
// which was before prev computed its groups); and Vault's list and
// revoked list match the cache exactly (no new serial, none gone, no new
// revocation). The groups are a function of the cache and the inventory
// alone, and prev confirmed its mismatches against a Vault and an
// inventory that are still the same, so computing them again would give
// prev's results; the run records prev's counts and points at its entries.
func (s *Service) reconcile(ctx context.Context, av AuditorVault, run *store.ReconcileRun, prev *store.ReconcileRun) error {
	vaultErr := func(err error) error { return vaultUnavailable(err) }
	storeErr := func(err error) error { return storeUnavailable(err) }
	// Where the run's time goes (a wall clock for the log, not the
	// injected Now: durations, as the metrics measure them).
	var ph struct{ claim, list, revoked, merge, learn, read, fill, confirm time.Duration }
	mark := time.Now()
	lap := func(d *time.Duration) {
		t := time.Now()
		*d += t.Sub(mark)
		mark = t
	}
	defer func() {
		s.log.DebugContext(ctx, "reconciliation phases", "run", run.ID, "claim", ph.claim, "list", ph.list, "list_revoked", ph.revoked,
			"merge", ph.merge, "learn_from_inventory", ph.learn, "read_and_store", ph.read, "fill", ph.fill, "confirm", ph.confirm,
			"kept_results_of", run.ResultsRun)
	}()
	inventoryChanged, err := s.store.ClaimInventoryChanges(ctx)
	if err != nil {
		return storeErr(err)
	}
	lap(&ph.claim)
	mount := s.opts.PKIMount
	raw, err := av.ListCertificates(ctx, mount)
	if err != nil {
		return vaultErr(err)
	}
	listed := make([]string, len(raw))
	for i, r := range raw {
		listed[i] = vaultSerial(r)
	}
	raw = nil
	slices.Sort(listed)
	listed = slices.Compact(listed)
	run.Listed = len(listed)
	lap(&ph.list)
	revoked, err := s.vaultRevoked(ctx, av)
	if err != nil {
		return err
	}
	lap(&ph.revoked)

	// One sorted merge of Vault's list with the cache (both in serial
	// order, the cache read a page at a time): serials only in the list are
	// new, serials only in the cache are gone, and serials in both may have
	// been revoked since.
	var toRead, gone, nowRevoked, recheck []string
	i := 0
	for after := ""; ; {
		page, err := s.store.VaultCertStates(ctx, after, reconcileCachePage)
		if err != nil {
			return storeErr(err)
		}
		for _, c := range page {
			for i < len(listed) && listed[i] < c.Serial {
				toRead = append(toRead, listed[i])
				i++
			}
			if i == len(listed) || listed[i] != c.Serial {
				gone = append(gone, c.Serial)
				continue
			}
			i++
			if c.Revoked || c.Kind == store.VaultKindCA {
				continue // Vault never takes a revocation back
			}
			if revoked == nil {
				recheck = append(recheck, c.Serial)
			} else if _, r := revoked[c.Serial]; r {
				nowRevoked = append(nowRevoked, c.Serial)
			}
		}
		if len(page) < reconcileCachePage {
			break
		}
		after = page[len(page)-1].Serial
	}
	toRead = append(toRead, listed[i:]...)
	listed = nil
	lap(&ph.merge)
	if prev != nil && prev.State == store.RunDone && !inventoryChanged && revoked != nil &&
		len(toRead) == 0 && len(gone) == 0 && len(nowRevoked) == 0 {
		run.ResultsRun = prev.ID
		if prev.ResultsRun != 0 {
			run.ResultsRun = prev.ResultsRun
		}
		run.ReconcileCounts = prev.ReconcileCounts
		return nil
	}
	if err := s.store.DeleteVaultCerts(ctx, gone); err != nil {
		return storeErr(err)
	}
	if err := s.store.SetVaultCertsRevoked(ctx, nowRevoked, true); err != nil {
		return storeErr(err)
	}
	// Without the revoked list (an older service policy), revocation comes
	// from each live certificate itself: slower, same answer.
	if len(recheck) > 0 {
		certs, err := s.readVaultCerts(ctx, av, recheck, run)
		if err != nil {
			return vaultErr(err)
		}
		var now []string
		for _, c := range certs {
			if c.Revoked {
				now = append(now, c.Serial)
			}
		}
		if err := s.store.SetVaultCertsRevoked(ctx, now, true); err != nil {
			return storeErr(err)
		}
	}

	run.ToRead = len(toRead)
	if err := s.store.UpdateReconcileRun(ctx, run); err != nil {
		return storeErr(err)
	}
	lap(&ph.merge) // and the cache's updates
	for len(toRead) > 0 {
		chunk := toRead[:min(len(toRead), reconcileLearnChunk)]
		toRead = toRead[len(chunk):]
		known, unknown, err := s.learnFromInventory(ctx, chunk, revoked)
		if err != nil {
			return storeErr(err)
		}
		if err := s.store.PutVaultCerts(ctx, known); err != nil {
			return storeErr(err)
		}
		run.Read += len(known)
		lap(&ph.learn)
		for len(unknown) > 0 {
			part := unknown[:min(len(unknown), reconcileChunk)]
			unknown = unknown[len(part):]
			read, err := s.readVaultCerts(ctx, av, part, run)
			if err != nil {
				return vaultErr(err)
			}
			if err := s.store.PutVaultCerts(ctx, read); err != nil {
				return storeErr(err)
			}
			run.Read += len(part)
			if err := s.store.UpdateReconcileRun(ctx, run); err != nil {
				return storeErr(err)
			}
		}
		if err := s.store.UpdateReconcileRun(ctx, run); err != nil {
			return storeErr(err)
		}
		lap(&ph.read)
	}

	// Expired as of now: Vault's tidy has removed (or will remove) those,
	// so the inventory rows it no longer holds are counted, not listed.
	counts, err := s.store.FillReconcileResults(ctx, run.ID, s.now())
	if err != nil {
		return storeErr(err)
	}
	lap(&ph.fill)
	run.ReconcileCounts = counts
	n, err := s.confirmMismatches(ctx, av, run)
	if err != nil {
		return err
	}
	lap(&ph.confirm)
	run.StateMismatch = n
	return nil
}

// learnFromInventory splits new serials into what the portal issued itself
// and the rest. A serial the inventory holds came from Vault's own answer
// to the portal's pki/issue or pki/sign (RecordIssuance writes it in the
// same transaction as the audit event), so its subject and expiry are
// taken from the row and its kind is client (the portal's roles issue
// nothing else); its revocation comes from Vault's revoked list, never
// from the inventory, so a revocation recorded but not done in Vault is
// still a state_mismatch. Only the rest (unknown: issued around the portal)
// is read from Vault. Without the revoked list (revoked nil) every serial
// is read, as revocation then comes from the certificate itself.
func (s *Service) learnFromInventory(ctx context.Context, serials []string, revoked map[string]struct{}) (known []store.VaultCert, unknown []string, err error) {
	if revoked == nil {
		return nil, serials, nil
	}
	rows, err := s.store.CertificatesBySerials(ctx, serials)
	if err != nil {
		return nil, nil, err
	}
	inInventory := make(map[string]*store.Certificate, len(rows))
	for _, c := range rows {
		inInventory[c.Serial] = c
	}
	for _, serial := range serials {
		c, ok := inInventory[serial]
		if !ok {
			unknown = append(unknown, serial)
			continue
		}
		_, r := revoked[serial]
		known = append(known, store.VaultCert{Serial: serial, Subject: c.Subject, NotAfter: c.NotAfter, Revoked: r, Kind: store.VaultKindClient})
	}
	return known, unknown, nil
}

// readVaultCerts reads serials from Vault, at most the configured number at
// a time, and returns what was learned in the order given; a serial tidied
// away since the list is left out.
func (s *Service) readVaultCerts(ctx context.Context, av AuditorVault, serials []string, run *store.ReconcileRun) ([]store.VaultCert, error) {
	out := make([]store.VaultCert, len(serials))
	found := make([]bool, len(serials))
	var reads atomic.Int64
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(s.reconcileConcurrency(), len(serials)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				reads.Add(1)
				cert, err := av.ReadCertificate(ctx, s.opts.PKIMount, serials[i])
				if errors.Is(err, vault.ErrNotFound) {
					continue
				}
				if err != nil {
					cancel(err)
					continue
				}
				kind := store.VaultKindClient
				switch {
				case cert.IsCA:
					kind = store.VaultKindCA
				case isServerCertificate(cert.Certificate):
					kind = store.VaultKindServer
				}
				out[i] = store.VaultCert{Serial: serials[i], Subject: cert.Subject.CommonName, NotAfter: cert.NotAfter,
					Revoked: !cert.RevokedAt.IsZero(), Kind: kind}
				found[i] = true
			}
		}()
	}
feed:
	for i := range serials {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	run.VaultReads += int(reads.Load())
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	kept := out[:0]
	for i, c := range out {
		if found[i] {
			kept = append(kept, c)
		}
	}
	return kept, nil
}

// confirmMismatches stores the run's state_mismatch entries: inventory rows
// whose revocation differs from the cache's, each confirmed from Vault and
// the store once more, so a revocation in flight (Vault first, then the
// record) is not reported. It returns how many there are.
func (s *Service) confirmMismatches(ctx context.Context, av AuditorVault, run *store.ReconcileRun) (int, error) {
	n := 0
	for after := ""; ; {
		page, err := s.store.MismatchCandidates(ctx, after, reconcileCachePage)
		if err != nil {
			return 0, storeUnavailable(err)
		}
		var entries []ReconcileEntry
		var learned []string
		for _, c := range page {
			run.VaultReads++
			cert, err := av.ReadCertificate(ctx, s.opts.PKIMount, c.Serial)
			if errors.Is(err, vault.ErrNotFound) {
				continue // gone since the list; the next run shows it as inventory_only
			}
			if err != nil {
				return 0, vaultUnavailable(err)
			}
			inVault := !cert.RevokedAt.IsZero()
			if inVault {
				learned = append(learned, c.Serial) // revoked after the list
			}
			if inVault == c.Revoked() {
				continue
			}
			now, err := s.store.GetCertificate(ctx, c.Serial)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return 0, storeUnavailable(err)
			}
			if now != nil && now.Revoked() == inVault {
				continue
			}
			entries = append(entries, ReconcileEntry{Serial: c.Serial, Subject: c.Subject, NotAfter: c.NotAfter, Revoked: inVault})
		}
		if err := s.store.SetVaultCertsRevoked(ctx, learned, true); err != nil {
			return 0, storeUnavailable(err)
		}
		if err := s.store.AddReconcileResults(ctx, run.ID, store.ReconcileStateMismatch, entries); err != nil {
			return 0, storeUnavailable(err)
		}
		n += len(entries)
		if len(page) < reconcileCachePage {
			return n, nil
		}
		after = page[len(page)-1].Serial
	}
}
