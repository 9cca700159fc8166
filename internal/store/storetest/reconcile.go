package storetest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// testReconcile: the Vault cache pages in serial order, upserts, forgets and
// revokes; the results of a run are computed from the cache and the
// inventory (vault_only, known, inventory_only, mismatch candidates), paged,
// and pruned with older runs; run progress and state round-trip.
func testReconcile(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	na := now.Add(48 * time.Hour)
	vc := func(serial, kind string, revoked bool) store.VaultCert {
		return store.VaultCert{Serial: serial, Subject: "cn-" + serial, NotAfter: na, Revoked: revoked, Kind: kind}
	}
	// 1,200 client certificates (more than one page of every batch), a
	// server one, a CA, and two the inventory also holds.
	var certs []store.VaultCert
	for i := range 1200 {
		certs = append(certs, vc(fmt.Sprintf("0a:%04x", i), store.VaultKindClient, false))
	}
	certs = append(certs, vc("0b:01", store.VaultKindServer, false), vc("0c:01", store.VaultKindCA, false),
		vc("0d:01", store.VaultKindClient, false), vc("0d:02", store.VaultKindClient, true))
	// A subject PostgreSQL could not hold as is.
	certs[0].Subject = "nul\x00here"
	if err := s.PutVaultCerts(ctx, certs); err != nil {
		t.Fatal(err)
	}
	// Upsert: a second put of a serial replaces it.
	if err := s.PutVaultCerts(ctx, []store.VaultCert{vc("0a:0001", store.VaultKindClient, true)}); err != nil {
		t.Fatal(err)
	}
	var all []store.VaultCert
	for after := ""; ; {
		page, err := s.VaultCerts(ctx, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].Serial
	}
	if len(all) != 1204 || all[0].Serial != "0a:0000" || all[1203].Serial != "0d:02" {
		t.Fatalf("cache pages: %d rows, first %+v", len(all), all[0])
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].Serial >= all[i].Serial {
			t.Fatalf("cache not in serial order at %d: %s, %s", i, all[i-1].Serial, all[i].Serial)
		}
	}
	if all[0].Subject != "nul\uFFFDhere" || !all[1].Revoked || !all[0].NotAfter.Equal(na) || all[1202].Kind != store.VaultKindClient {
		t.Fatalf("cache rows: %+v %+v %+v", all[0], all[1], all[1202])
	}
	// The merge's view: the same rows, in the same order, with their
	// revocation and kind, a page at a time.
	var states []store.VaultCertState
	for after := ""; ; {
		page, err := s.VaultCertStates(ctx, after, 333)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, page...)
		if len(page) < 333 {
			break
		}
		after = page[len(page)-1].Serial
	}
	if len(states) != len(all) {
		t.Fatalf("VaultCertStates: %d rows; VaultCerts: %d", len(states), len(all))
	}
	for i, c := range all {
		if st := states[i]; st != (store.VaultCertState{Serial: c.Serial, Revoked: c.Revoked, Kind: c.Kind}) {
			t.Fatalf("VaultCertStates row %d = %+v; VaultCerts has %+v", i, st, c)
		}
	}
	if err := s.DeleteVaultCerts(ctx, []string{"0a:0002", "0a:0003"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetVaultCertsRevoked(ctx, []string{"0a:0004"}, true); err != nil {
		t.Fatal(err)
	}
	page, err := s.VaultCerts(ctx, "0a:0001", 2)
	if err != nil || len(page) != 2 || page[0].Serial != "0a:0004" || !page[0].Revoked || page[1].Revoked {
		t.Fatalf("after delete and revoke: %+v %v", page, err)
	}

	// The inventory: 0d:01 and 0d:02 in both (0d:02 revoked in Vault only,
	// 0d:01 revoked in the inventory only), 0e:01 in the inventory only.
	for _, c := range []*store.Certificate{cert("0d:01", "alice", now, time.Hour), cert("0d:02", "bob", now, time.Hour), cert("0e:01", "carol", now, time.Hour)} {
		if c.Serial == "0d:01" {
			c.RevokedAt, c.RevokeReason, c.RevokedBy = now, "lost", "alice"
		}
		if err := s.InsertCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}

	latest, done, err := s.ReconcileRuns(ctx)
	if err != nil || latest != nil || done != nil {
		t.Fatalf("runs before the first: %+v %+v %v", latest, done, err)
	}
	run := &store.ReconcileRun{By: "audrey", StartedAt: now}
	if run.ID, err = s.StartReconcileRun(ctx, run); err != nil || run.ID == 0 {
		t.Fatalf("start run: %d %v", run.ID, err)
	}
	run.Listed, run.ToRead, run.Read, run.VaultReads = 1204, 100, 50, 51
	if err := s.UpdateReconcileRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	latest, done, err = s.ReconcileRuns(ctx)
	if err != nil || latest == nil || done != nil || latest.State != store.RunRunning || latest.Read != 50 || latest.ToRead != 100 || latest.By != "audrey" || !latest.FinishedAt.IsZero() {
		t.Fatalf("running run: %+v %+v %v", latest, done, err)
	}

	counts, err := s.FillReconcileResults(ctx, run.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	// 1,198 client certificates left in the cache, none in the inventory.
	want := store.ReconcileCounts{VaultTotal: 1201, InventoryTotal: 3, VaultOnly: 1198, Known: 1, InventoryOnly: 1}
	if counts != want {
		t.Fatalf("counts %+v, want %+v", counts, want)
	}
	cands, err := s.MismatchCandidates(ctx, "", 10)
	if err != nil || strings.Join(serials(cands), ",") != "0d:01,0d:02" {
		t.Fatalf("mismatch candidates: %v %v", serials(cands), err)
	}
	if cands, err = s.MismatchCandidates(ctx, "0d:01", 10); err != nil || strings.Join(serials(cands), ",") != "0d:02" {
		t.Fatalf("mismatch candidates after 0d:01: %v %v", serials(cands), err)
	}
	if err := s.AddReconcileResults(ctx, run.ID, store.ReconcileStateMismatch, []store.ReconcileEntry{
		{Serial: "0d:02", Subject: "bob", NotAfter: na, Revoked: true}}); err != nil {
		t.Fatal(err)
	}
	var vaultOnly []store.ReconcileEntry
	for after := ""; ; {
		page, err := s.ReconcileResults(ctx, run.ID, store.ReconcileVaultOnly, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		vaultOnly = append(vaultOnly, page...)
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].Serial
	}
	if len(vaultOnly) != 1198 || vaultOnly[0].Serial != "0a:0000" || !vaultOnly[1].Revoked || vaultOnly[1].Serial != "0a:0001" || !vaultOnly[0].NotAfter.Equal(na) {
		t.Fatalf("vault_only: %d, %+v %+v", len(vaultOnly), vaultOnly[0], vaultOnly[1])
	}
	for g, w := range map[string]string{store.ReconcileKnown: "0b:01", store.ReconcileInventoryOnly: "0e:01", store.ReconcileStateMismatch: "0d:02"} {
		got, err := s.ReconcileResults(ctx, run.ID, g, "", 10)
		if err != nil || len(got) != 1 || got[0].Serial != w {
			t.Fatalf("%s: %+v %v, want %s", g, got, err, w)
		}
	}
	inv, _ := s.ReconcileResults(ctx, run.ID, store.ReconcileInventoryOnly, "", 10)
	if inv[0].Subject != "carol@example.com" || inv[0].Revoked {
		t.Errorf("inventory_only entry: %+v", inv[0])
	}

	run.State, run.FinishedAt, run.ReconcileCounts = store.RunDone, now.Add(time.Second), counts
	if err := s.UpdateReconcileRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	second := &store.ReconcileRun{By: "scheduler", StartedAt: now.Add(time.Minute)}
	if second.ID, err = s.StartReconcileRun(ctx, second); err != nil || second.ID <= run.ID {
		t.Fatalf("second run: %d %v", second.ID, err)
	}
	latest, done, err = s.ReconcileRuns(ctx)
	if err != nil || latest.ID != second.ID || done == nil || done.ID != run.ID || done.VaultOnly != 1198 || !done.FinishedAt.Equal(now.Add(time.Second)) {
		t.Fatalf("runs while the second runs: %+v %+v %v", latest, done, err)
	}
	if _, err := s.FillReconcileResults(ctx, second.ID, now); err != nil {
		t.Fatal(err)
	}
	second.State, second.FinishedAt = store.RunFailed, now.Add(2*time.Minute)
	second.Error = "error.vault_unavailable"
	if err := s.UpdateReconcileRun(ctx, second); err != nil {
		t.Fatal(err)
	}
	if latest, done, err = s.ReconcileRuns(ctx); err != nil || latest.State != store.RunFailed || latest.Error != "error.vault_unavailable" || done.ID != run.ID {
		t.Fatalf("after a failed run: %+v %+v %v", latest, done, err)
	}
	// Pruning keeps the given run's results and drops the others'.
	if err := s.PruneReconcileRuns(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReconcileResults(ctx, second.ID, store.ReconcileVaultOnly, "", 10); err != nil || len(got) != 0 {
		t.Fatalf("results of a pruned run: %d %v", len(got), err)
	}
	if got, err := s.ReconcileResults(ctx, run.ID, store.ReconcileVaultOnly, "", 10); err != nil || len(got) != 10 {
		t.Fatalf("results of the kept run: %d %v", len(got), err)
	}

	// A run that keeps an earlier run's results shows that run's entries,
	// and pruning with it keeps them.
	third := &store.ReconcileRun{By: "scheduler", StartedAt: now.Add(3 * time.Minute)}
	if third.ID, err = s.StartReconcileRun(ctx, third); err != nil {
		t.Fatal(err)
	}
	third.State, third.FinishedAt, third.ReconcileCounts, third.ResultsRun = store.RunDone, now.Add(4*time.Minute), counts, run.ID
	if err := s.UpdateReconcileRun(ctx, third); err != nil {
		t.Fatal(err)
	}
	if latest, done, err = s.ReconcileRuns(ctx); err != nil || latest.ID != third.ID || done.ResultsRun != run.ID || done.VaultOnly != 1198 {
		t.Fatalf("run keeping results: %+v %+v %v", latest, done, err)
	}
	if err := s.PruneReconcileRuns(ctx, third.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReconcileResults(ctx, third.ID, store.ReconcileVaultOnly, "", 10); err != nil || len(got) != 10 || got[0].Serial != "0a:0000" {
		t.Fatalf("results a run kept, after pruning: %d %v", len(got), err)
	}
	if got, err := s.ReconcileResults(ctx, third.ID, store.ReconcileStateMismatch, "", 10); err != nil || len(got) != 1 || got[0].Serial != "0d:02" {
		t.Fatalf("mismatches a run kept: %+v %v", got, err)
	}
	if got, err := s.ReconcileResults(ctx, 1<<40, store.ReconcileVaultOnly, "", 10); err != nil || len(got) != 0 {
		t.Fatalf("results of no run: %d %v", len(got), err)
	}

	// The inventory's change flag: set by any insert or update of a row
	// (the rows above set it), cleared by a claim, set again by the next
	// change, whichever way it is made.
	if changed, err := s.ClaimInventoryChanges(ctx); err != nil || !changed {
		t.Fatalf("first claim after inserts: %v %v", changed, err)
	}
	if changed, err := s.ClaimInventoryChanges(ctx); err != nil || changed {
		t.Fatalf("claim with nothing changed: %v %v", changed, err)
	}
	// Writes elsewhere do not set it.
	if err := s.PutVaultCerts(ctx, []store.VaultCert{vc("0f:01", store.VaultKindClient, false)}); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.ClaimInventoryChanges(ctx); err != nil || changed {
		t.Fatalf("claim after a cache write: %v %v", changed, err)
	}
	if err := s.MarkRevoked(ctx, "0e:01", store.Revocation{At: now, Reason: "lost", By: "carol"}); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.ClaimInventoryChanges(ctx); err != nil || !changed {
		t.Fatalf("claim after a revocation: %v %v", changed, err)
	}
	if err := s.InsertCertificate(ctx, cert("0e:02", "carol", now, time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertCertificate(ctx, cert("0e:03", "carol", now, time.Hour)); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.ClaimInventoryChanges(ctx); err != nil || !changed {
		t.Fatalf("claim after two inserts: %v %v", changed, err)
	}
	if changed, err := s.ClaimInventoryChanges(ctx); err != nil || changed {
		t.Fatalf("second claim after two inserts: %v %v", changed, err)
	}
}

// testReconcileExpired: an inventory row Vault does not hold is an
// inventory_only entry while it has not expired at the run's moment, and
// only counted (ExpiredTidied, kept with the run) once it has, revoked or
// not (Vault's tidy removes expired certificates); an expired row Vault
// still holds is matched as before, and a CA of the same serial does not
// count as holding it.
func testReconcileExpired(t *testing.T, s store.Store) {
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Millisecond)
	vc := func(serial, kind string) store.VaultCert {
		return store.VaultCert{Serial: serial, Subject: "cn-" + serial, NotAfter: at.Add(-time.Hour), Kind: kind}
	}
	if err := s.PutVaultCerts(ctx, []store.VaultCert{vc("1a:01", store.VaultKindClient), vc("1a:02", store.VaultKindCA)}); err != nil {
		t.Fatal(err)
	}
	issued := at.Add(-48 * time.Hour)
	rows := []*store.Certificate{
		cert("1a:01", "alice", issued, 47*time.Hour),                  // expired, still in Vault: matched
		cert("1a:02", "alice", issued, 47*time.Hour),                  // expired, only a CA of that serial in Vault: tidied
		cert("1b:01", "bob", issued, 47*time.Hour),                    // expired an hour ago: tidied
		cert("1b:02", "bob", issued, 48*time.Hour),                    // expires at the run's moment: tidied
		cert("1b:03", "bob", issued, 47*time.Hour),                    // expired and revoked: tidied
		cert("1c:01", "carol", issued, 48*time.Hour+time.Millisecond), // live by a millisecond: listed
		cert("1c:02", "carol", issued, 72*time.Hour),                  // live, revoked: listed
	}
	for _, c := range rows {
		if c.Serial == "1b:03" || c.Serial == "1c:02" {
			c.RevokedAt, c.RevokeReason, c.RevokedBy = issued.Add(time.Hour), "lost", c.Username
		}
		if err := s.InsertCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	run := &store.ReconcileRun{By: "audrey", StartedAt: at}
	var err error
	if run.ID, err = s.StartReconcileRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	counts, err := s.FillReconcileResults(ctx, run.ID, at)
	if err != nil {
		t.Fatal(err)
	}
	want := store.ReconcileCounts{VaultTotal: 1, InventoryTotal: 7, InventoryOnly: 2, ExpiredTidied: 4}
	if counts != want {
		t.Fatalf("counts %+v, want %+v", counts, want)
	}
	got, err := s.ReconcileResults(ctx, run.ID, store.ReconcileInventoryOnly, "", 10)
	if err != nil || len(got) != 2 || got[0].Serial != "1c:01" || got[0].Revoked || got[1].Serial != "1c:02" || !got[1].Revoked {
		t.Fatalf("inventory_only: %+v %v, want 1c:01 and 1c:02 (revoked)", got, err)
	}
	for _, g := range []string{store.ReconcileVaultOnly, store.ReconcileKnown, store.ReconcileStateMismatch} {
		if got, err := s.ReconcileResults(ctx, run.ID, g, "", 10); err != nil || len(got) != 0 {
			t.Fatalf("%s: %+v %v", g, got, err)
		}
	}
	// The count is kept with the run.
	run.State, run.FinishedAt, run.ReconcileCounts = store.RunDone, at.Add(time.Second), counts
	if err := s.UpdateReconcileRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	if _, done, err := s.ReconcileRuns(ctx); err != nil || done == nil || done.ExpiredTidied != 4 || done.InventoryOnly != 2 {
		t.Fatalf("run record: %+v %v", done, err)
	}
	// A day later the live ones have expired too.
	later := &store.ReconcileRun{By: "audrey", StartedAt: at.Add(24 * time.Hour)}
	if later.ID, err = s.StartReconcileRun(ctx, later); err != nil {
		t.Fatal(err)
	}
	if c, err := s.FillReconcileResults(ctx, later.ID, at.Add(48*time.Hour)); err != nil || c.InventoryOnly != 0 || c.ExpiredTidied != 6 {
		t.Fatalf("a day later: %+v %v", c, err)
	}
}

// testMismatchCandidates: the candidates are exactly the inventory rows
// whose revocation differs from a non-CA cache row of the same serial
// (what one join on v.revoked <> (c.revoked_at IS NOT NULL) gave), either
// way round, merged in serial order whatever the page size, including
// pages that end where one way gives way to the other; and they follow
// later changes to either side (the partial indexes behind them are kept
// up to date).
func testMismatchCandidates(t *testing.T, s store.Store) {
	ctx := context.Background()
	type vaultRow struct {
		revoked bool
		kind    string
	}
	vault := map[string]vaultRow{}
	inventory := map[string]bool{} // serial -> revoked
	kinds := []string{store.VaultKindClient, store.VaultKindServer, store.VaultKindCA}
	// Every combination of Vault's state, the inventory's state, held or
	// not by the inventory, and kind, twice, in an order that interleaves
	// the two ways of differing.
	var certs []store.VaultCert
	for i := range 192 {
		serial := fmt.Sprintf("2a:%03d", i)
		v := vaultRow{revoked: i&1 != 0, kind: kinds[(i>>3)%3]}
		vault[serial] = v
		certs = append(certs, store.VaultCert{Serial: serial, Subject: "cn-" + serial, NotAfter: t0.Add(time.Hour), Revoked: v.revoked, Kind: v.kind})
		if i&4 != 0 {
			continue // Vault only
		}
		inventory[serial] = i&2 != 0
	}
	// The inventory's own: revoked and not, Vault holding neither.
	for i := range 8 {
		inventory[fmt.Sprintf("2b:%02d", i)] = i%2 == 0
	}
	if err := s.PutVaultCerts(ctx, certs); err != nil {
		t.Fatal(err)
	}
	for serial, revoked := range inventory {
		c := cert(serial, "user-"+serial, t0, 30*24*time.Hour)
		if revoked {
			c.RevokedAt, c.RevokeReason, c.RevokedBy, c.Ticket = t0.Add(time.Minute), "lost", "helpdesk", "T-1"
		}
		c.Label = "label " + serial
		if err := s.InsertCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// want is the old join's answer, from the model; vaultRevoked tells
	// the halves apart.
	want := func() (list []string, vaultRevoked map[string]bool) {
		vaultRevoked = map[string]bool{}
		for serial, v := range vault {
			if inv, ok := inventory[serial]; ok && v.kind != store.VaultKindCA && v.revoked != inv {
				list = append(list, serial)
				vaultRevoked[serial] = v.revoked
			}
		}
		sort.Strings(list)
		return list, vaultRevoked
	}
	walk := func(limit int) []*store.Certificate {
		t.Helper()
		var out []*store.Certificate
		for after, pages := "", 0; ; pages++ {
			if pages > 1000 {
				t.Fatalf("limit %d: no end after %d pages", limit, pages)
			}
			page, err := s.MismatchCandidates(ctx, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > limit {
				t.Fatalf("limit %d: a page of %d", limit, len(page))
			}
			out = append(out, page...)
			if len(page) < limit {
				return out
			}
			after = page[len(page)-1].Serial
		}
	}
	check := func(when string) {
		t.Helper()
		list, vaultRevoked := want()
		// The data set must exercise both halves and their meeting.
		var halves [2]int
		switches := 0
		for i, serial := range list {
			if vaultRevoked[serial] {
				halves[0]++
			} else {
				halves[1]++
			}
			if i > 0 && vaultRevoked[serial] != vaultRevoked[list[i-1]] {
				switches++
			}
		}
		if halves[0] == 0 || halves[1] == 0 || switches == 0 {
			t.Fatalf("%s: the data set has %d Vault-revoked and %d inventory-revoked candidates, %d switches between them",
				when, halves[0], halves[1], switches)
		}
		wantList := strings.Join(list, ",")
		for _, limit := range []int{1, 2, 3, 5, len(list) - 1, len(list), 1000} {
			got := walk(limit)
			if g := strings.Join(serials(got), ","); g != wantList {
				t.Fatalf("%s, pages of %d:\n got %s\nwant %s", when, limit, g, wantList)
			}
			for _, c := range got {
				if c.Revoked() != inventory[c.Serial] || c.Username != "user-"+c.Serial || c.Subject != c.Username+"@example.com" ||
					c.Label != "label "+c.Serial || !c.NotAfter.Equal(t0.Add(30*24*time.Hour)) {
					t.Fatalf("%s: candidate %+v is not its inventory row", when, c)
				}
			}
		}
		// Starting after each candidate (one of either half) gives the
		// next, whichever half it is from; after the last, none.
		for i, serial := range list {
			page, err := s.MismatchCandidates(ctx, serial, 1)
			next := ""
			if i+1 < len(list) {
				next = list[i+1]
			}
			if err != nil || strings.Join(serials(page), ",") != next {
				t.Fatalf("%s: after %s: %v %v, want %q", when, serial, serials(page), err, next)
			}
		}
	}
	check("as written")

	// Changes on both sides: Vault revokes or un-revokes (the cache set
	// from its list), the inventory records revocations, a cached row
	// changes kind or goes.
	var vaultRevokes, vaultUnrevokes []string
	for serial, v := range vault {
		inv, held := inventory[serial]
		switch {
		case held && !v.revoked && !inv && len(vaultRevokes) < 5:
			vaultRevokes = append(vaultRevokes, serial)
		case held && v.revoked && inv && len(vaultUnrevokes) < 5:
			vaultUnrevokes = append(vaultUnrevokes, serial)
		}
	}
	if err := s.SetVaultCertsRevoked(ctx, vaultRevokes, true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetVaultCertsRevoked(ctx, vaultUnrevokes, false); err != nil {
		t.Fatal(err)
	}
	for _, serial := range vaultRevokes {
		vault[serial] = vaultRow{revoked: true, kind: vault[serial].kind}
	}
	for _, serial := range vaultUnrevokes {
		vault[serial] = vaultRow{revoked: false, kind: vault[serial].kind}
	}
	marked := 0
	for serial, inv := range inventory {
		if inv || marked == 6 {
			continue
		}
		if err := s.MarkRevoked(ctx, serial, store.Revocation{At: t0.Add(2 * time.Minute), Reason: "lost", By: "helpdesk"}); err != nil {
			t.Fatal(err)
		}
		inventory[serial] = true
		marked++
	}
	list, _ := want()
	toCA, gone := list[0], list[len(list)-1]
	var fromCA string
	for serial, v := range vault {
		if inv, ok := inventory[serial]; ok && v.kind == store.VaultKindCA && v.revoked != inv {
			fromCA = serial
			break
		}
	}
	if fromCA == "" {
		t.Fatal("no CA row that would be a candidate as a client certificate")
	}
	if err := s.PutVaultCerts(ctx, []store.VaultCert{
		{Serial: toCA, Subject: "cn-" + toCA, NotAfter: t0.Add(time.Hour), Revoked: vault[toCA].revoked, Kind: store.VaultKindCA},
		{Serial: fromCA, Subject: "cn-" + fromCA, NotAfter: t0.Add(time.Hour), Revoked: vault[fromCA].revoked, Kind: store.VaultKindClient},
	}); err != nil {
		t.Fatal(err)
	}
	vault[toCA] = vaultRow{revoked: vault[toCA].revoked, kind: store.VaultKindCA}
	vault[fromCA] = vaultRow{revoked: vault[fromCA].revoked, kind: store.VaultKindClient}
	if err := s.DeleteVaultCerts(ctx, []string{gone}); err != nil {
		t.Fatal(err)
	}
	delete(vault, gone)
	check("after changes on both sides")
}
