package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// readCountingVault is a reverse proxy in front of the real devvault that
// counts the portal's certificate reads (GET /v1/pki/cert/<serial>) and
// LISTs of pki/certs, and can hold LIST requests until released.
type readCountingVault struct {
	URL        string
	reads      atomic.Int64
	lists      atomic.Int64
	mu         sync.Mutex
	hold       chan struct{} // non-nil: LIST pki/certs waits for it to close
	listArrive chan struct{} // told when a held LIST arrives
	perSerial  map[string]int
}

// readsOf is how many times serial (aa:bb:… or aa-bb-…) was read.
func (cv *readCountingVault) readsOf(serial string) int {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	return cv.perSerial[strings.ReplaceAll(strings.ToLower(serial), "-", ":")]
}

func startReadCountingVault(t *testing.T, v *testenv.Vault) *readCountingVault {
	t.Helper()
	target, err := url.Parse(v.Addr)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	cv := &readCountingVault{perSerial: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case r.Method == http.MethodGet && strings.HasPrefix(p, "/v1/pki/cert/"):
			cv.reads.Add(1)
			cv.mu.Lock()
			cv.perSerial[strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(p, "/v1/pki/cert/")), "-", ":")]++
			cv.mu.Unlock()
		case (r.Method == "LIST" || r.URL.Query().Get("list") == "true") && strings.TrimSuffix(p, "/") == "/v1/pki/certs":
			cv.lists.Add(1)
			cv.mu.Lock()
			hold, arrive := cv.hold, cv.listArrive
			cv.mu.Unlock()
			if hold != nil {
				arrive <- struct{}{}
				<-hold
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cv.URL = srv.URL
	return cv
}

// TestReconcileRepeatReadsOnlyNew: the first run reads every certificate
// the portal did not issue once, and none it issued (those are known from
// the inventory); a repeat run reads only the serials issued since, yet
// sees a revocation done in Vault after the first run (from Vault's
// revoked list, without reading the certificate again); a run with nothing
// changed reads nothing and keeps the last results, standing mismatch
// included; a change made straight in the database is seen by the next
// run. The page shows the last run at once, without asking Vault.
func TestReconcileRepeatReadsOnlyNew(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	cv := startReadCountingVault(t, v)
	p := startPortal(t, v, map[string]string{"VAULT_ADDR": cv.URL, "CERTPORTAL_RECONCILE_CONCURRENCY": "3"})
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	mine, newerMine := alice.issue("modern"), alice.issue("modern")
	var around []string
	for range 5 {
		around = append(around, nginxCertsUserSerial(t, v, "alice"))
	}
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))

	if r := audrey.get("/audit/reconcile"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `id="reconcile-start"`) ||
		!strings.Contains(string(r.Body), "No reconciliation has run yet") {
		t.Fatalf("page before the first run: %d\n%s", r.StatusCode, r.Body)
	}
	reads := cv.reads.Load()
	rec := reconcileJSON(t, audrey)
	first := cv.reads.Load() - reads
	// Every certificate in the mount the portal did not issue, once: the
	// five issued around it and whatever setup issued; never one twice,
	// and not the portal's own, whose row says what a read would.
	if first < 5 {
		t.Fatalf("first run read %d certificates, want at least 5", first)
	}
	for _, s := range around {
		if e := findEntry(rec["vault_only"], s); e == nil || e.Revoked {
			t.Fatalf("first run: %s is %+v in vault_only", s, e)
		}
		if n := cv.readsOf(s); n != 1 {
			t.Errorf("first run read %s %d times, want 1", s, n)
		}
	}
	for _, s := range []string{mine, newerMine} {
		if n := cv.readsOf(s); n != 0 {
			t.Errorf("first run read the portal's own certificate %s %d times, want 0", s, n)
		}
		if g := groupsOf(rec, s); len(g) != 0 {
			t.Errorf("the portal's own certificate %s is in %v", s, g)
		}
	}

	// After the first run: two new certificates, one vault_only one revoked
	// in Vault, and the portal's own one revoked in Vault behind its back.
	newer := []string{nginxCertsUserSerial(t, v, "alice"), nginxCertsUserSerial(t, v, "alice")}
	for _, s := range []string{around[0], mine} {
		if _, err := v.Admin.Logical().Write("pki/revoke", map[string]any{"serial_number": s}); err != nil {
			t.Fatal(err)
		}
	}
	reads = cv.reads.Load()
	second := runReconcile(t, audrey)
	rec = parseReconcileJSON(t, second)
	// The two new ones, and the mismatch confirmed once from Vault.
	if n := cv.reads.Load() - reads; n != 3 {
		t.Errorf("repeat run read %d certificates, want 3 (2 new + 1 mismatch confirmation)", n)
	}
	if e := findEntry(rec["vault_only"], around[0]); e == nil || !e.Revoked {
		t.Errorf("revocation in Vault after the first run not seen: %+v", e)
	}
	for _, s := range newer {
		if e := findEntry(rec["vault_only"], s); e == nil {
			t.Errorf("new certificate %s not in vault_only", s)
		}
	}
	if e := findEntry(rec["state_mismatch"], mine); e == nil || !e.Revoked {
		t.Errorf("portal certificate revoked in Vault only: %+v", e)
	}

	reads = cv.reads.Load()
	kept := runReconcile(t, audrey)
	rec = parseReconcileJSON(t, kept)
	if n := cv.reads.Load() - reads; n != 0 {
		t.Errorf("run with nothing changed read %d certificates, want 0", n)
	}
	if len(rec["vault_only"]) != 7 {
		t.Errorf("vault_only has %d entries, want 7", len(rec["vault_only"]))
	}
	if e := findEntry(rec["state_mismatch"], mine); e == nil || !e.Revoked || len(rec["state_mismatch"]) != 1 {
		t.Errorf("kept results lost the standing mismatch: %+v", rec["state_mismatch"])
	}
	db := openSQLite(t, p.DB)
	var keptOf int64
	if err := db.QueryRow(`SELECT results_run FROM reconcile_runs WHERE id = ?`, kept.Header.Get("X-Reconcile-Run")).Scan(&keptOf); err != nil ||
		strconv.FormatInt(keptOf, 10) != second.Header.Get("X-Reconcile-Run") {
		t.Errorf("run with nothing changed shows the results of run %d (%v), want %s's", keptOf, err, second.Header.Get("X-Reconcile-Run"))
	}

	// A change made straight in the database, not through the portal: the
	// next run sees it (the inventory's triggers mark it) and computes the
	// groups again.
	if _, err := db.Exec(`UPDATE certificates SET revoked_at = 1, revoke_reason = 'lost', revoked_by = 'x' WHERE serial = ?`, newerMine); err != nil {
		t.Fatal(err)
	}
	rec = reconcileJSON(t, audrey)
	if e := findEntry(rec["state_mismatch"], newerMine); e == nil || e.Revoked {
		t.Errorf("row revoked in the database only, after a run that kept results: %+v", rec["state_mismatch"])
	}
	if e := findEntry(rec["state_mismatch"], mine); e == nil {
		t.Errorf("standing mismatch lost on recomputing: %+v", rec["state_mismatch"])
	}

	// The page: the last run's time and counts, no Vault call.
	reads, lists := cv.reads.Load(), cv.lists.Load()
	page := audrey.get("/audit/reconcile")
	if page.StatusCode != http.StatusOK || !strings.Contains(string(page.Body), `id="reconcile-last"`) || !strings.Contains(string(page.Body), "asked for by audrey") {
		t.Fatalf("page after runs: %d\n%s", page.StatusCode, page.Body)
	}
	if !strings.Contains(extract(page.Body, `id="vault-only">`, "</table>"), around[1]) {
		t.Errorf("vault-only table lacks %s", around[1])
	}
	if cv.reads.Load() != reads || cv.lists.Load() != lists {
		t.Errorf("showing the page asked Vault: %d reads, %d lists", cv.reads.Load()-reads, cv.lists.Load()-lists)
	}
	// Starting a run is a post like any other: refused cross-site, and to
	// anyone but an auditor.
	if r := audrey.post("/audit/reconcile", nil, "Sec-Fetch-Site", "cross-site"); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site start: %d", r.StatusCode)
	}
	if r := alice.post("/audit/reconcile", nil); r.StatusCode != http.StatusForbidden {
		t.Errorf("employee start: %d", r.StatusCode)
	}
	if cv.lists.Load() != lists {
		t.Errorf("a refused start listed Vault")
	}
}

// TestReconcileOnceAcrossReplicas: two replicas on one PostgreSQL database
// asked to reconcile at the same time run it once: the second finds the
// lock held, refuses the start (409), and shows the first's run in
// progress; Vault is
// listed once, and the run's result is on both pages.
func TestReconcileOnceAcrossReplicas(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	cv := startReadCountingVault(t, v)
	dsn := pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
	env := map[string]string{"CERTPORTAL_DB": dsn, "VAULT_ADDR": cv.URL}
	first, second := startPortal(t, v, env), startPortal(t, v, env)
	around := nginxCertsUserSerial(t, v, "alice")
	a1, a2 := newBrowser(t, first.URL), newBrowser(t, second.URL)
	a1.mustLogin("audrey", v.Password(t, "audrey"))
	a2.mustLogin("audrey", v.Password(t, "audrey"))

	hold := make(chan struct{})
	arrive := make(chan struct{}, 4)
	cv.mu.Lock()
	cv.hold, cv.listArrive = hold, arrive
	cv.mu.Unlock()
	if r := a1.post("/audit/reconcile", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("start on the first replica: %d", r.StatusCode)
	}
	select {
	case <-arrive: // the first replica's run holds the lock, listing Vault
	case <-time.After(2 * time.Minute):
		t.Fatal("the first replica's run never listed Vault")
	}
	// The second replica sees the first one's run (it holds the lock):
	// its start is refused, and its page shows the run with no button.
	if r := a2.post("/audit/reconcile", nil); r.StatusCode != http.StatusConflict || !strings.Contains(string(r.Body), "A reconciliation is already running") {
		t.Fatalf("start on the second replica: %d, want 409\n%s", r.StatusCode, r.Body)
	}
	if r := a2.get("/audit/reconcile?format=json"); r.Header.Get("X-Reconcile-State") != "running" {
		t.Errorf("second replica's page: state %q, want running", r.Header.Get("X-Reconcile-State"))
	}
	if r := a2.get("/audit/reconcile"); !strings.Contains(string(r.Body), `id="reconcile-running"`) || strings.Contains(string(r.Body), `id="reconcile-start"`) {
		t.Errorf("second replica's page does not show the first one's run, or offers to start one:\n%s", r.Body)
	}
	cv.mu.Lock()
	cv.hold = nil
	cv.mu.Unlock()
	close(hold)
	deadline := time.Now().Add(2 * time.Minute)
	var r *response
	for {
		r = a2.get("/audit/reconcile?format=json")
		if r.Header.Get("X-Reconcile-State") == "done" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished run: %v", r.Header)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := cv.lists.Load(); n != 1 {
		t.Errorf("Vault listed %d times, want 1", n)
	}
	if e := findEntry(parseReconcileJSON(t, r)["vault_only"], around); e == nil {
		t.Errorf("the run's result is not on the second replica's page")
	}
	if run1, run2 := a1.get("/audit/reconcile?format=json").Header.Get("X-Reconcile-Run"), r.Header.Get("X-Reconcile-Run"); run1 != run2 || run1 == "0" {
		t.Errorf("replicas show runs %s and %s, want the same one", run1, run2)
	}
	ctx := context.Background()
	pg, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(ctx)
	var runs, events int
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM reconcile_runs`).Scan(&runs); err != nil {
		t.Fatal(err)
	}
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE action = 'audit.reconcile'`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if runs != 1 || events != 1 {
		t.Errorf("%d runs recorded and %d reconcile events, want 1 and 1", runs, events)
	}
}
