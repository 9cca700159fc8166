package main

import (
	"context"
	"errors"
	"html"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
	"github.com/certportal/certportal/internal/vault"
)

// mountTmpfs mounts a tmpfs of size (mount's syntax, "8m") on a fresh
// directory and unmounts it when the test ends, after everything started
// later (the portal) has stopped.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs on %s (this test needs root or CAP_SYS_ADMIN to make a full filesystem): %v: %s", size, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes path until the filesystem has no room left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{1 << 20, 4 << 10, 512} { // then the last blocks
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
}

// attempt is one issuance during a fault: what the user got, and the
// certificate Vault signed for it, if any.
type attempt struct {
	status int
	served string // serial of the .p12 handed out, "" if none
	signed string // serial Vault issued in the request, "" if none
	body   string
}

// tryIssue issues once and finds the certificate Vault signed for it.
func tryIssue(t *testing.T, v *testenv.Vault, b *client, lang string) attempt {
	t.Helper()
	before := certSet(t, v)
	r := b.post("/certificates?lang="+lang, issueForm(p12Password, p12Password, "720h0m0s", "modern"))
	a := attempt{status: r.StatusCode, body: string(r.Body)}
	if r.Header.Get("Content-Type") == "application/x-pkcs12" {
		_, cert, _, err := pkcs12.DecodeChain(r.Body, p12Password)
		if err != nil {
			t.Fatal(err)
		}
		a.served = vault.FormatSerial(cert.SerialNumber.Bytes())
	}
	for s := range certSet(t, v) {
		if !before[s] {
			a.signed = s
		}
	}
	return a
}

// checkFailedClosed: a failed issuance handed out nothing, showed the
// user the 503 page in their language, and the certificate Vault signed
// for it (if it got that far) is revoked.
func checkFailedClosed(t *testing.T, v *testenv.Vault, a attempt, lang i18n.Lang, revoked []string) {
	t.Helper()
	if a.status != http.StatusServiceUnavailable || a.served != "" {
		t.Fatalf("issuance during the fault: %d, served %q", a.status, a.served)
	}
	ok := false
	for _, key := range []string{"error.audit_unavailable", "error.store_unavailable", "error.internal"} {
		ok = ok || strings.Contains(a.body, html.EscapeString(i18n.T(lang, key)))
		if strings.Contains(a.body, key) {
			t.Fatalf("503 page shows the raw catalog key %s", key)
		}
	}
	if !ok {
		t.Fatalf("503 page in %s does not explain (or shows a raw key): %s", lang, a.body)
	}
	if a.signed != "" && !slices.Contains(revoked, a.signed) {
		t.Fatalf("certificate %s Vault signed in a failed request is not revoked", a.signed)
	}
}

// checkInventory: every certificate handed out is in the inventory with
// its issuance event; none of the failed requests left a row or an event.
func checkInventory(t *testing.T, count func(query, serial string) int, placeholder string, served, failed []string) {
	t.Helper()
	q := func(query, serial string) int { return count(strings.ReplaceAll(query, "?", placeholder), serial) }
	for _, s := range served {
		if q(`SELECT count(*) FROM certificates WHERE serial = ?`, s) != 1 || q(`SELECT count(*) FROM audit_events WHERE serial = ? AND action = 'certificate.issue'`, s) != 1 {
			t.Errorf("certificate %s was handed out but its row or issuance event is missing", s)
		}
	}
	for _, s := range failed {
		if q(`SELECT count(*) FROM certificates WHERE serial = ?`, s) != 0 || q(`SELECT count(*) FROM audit_events WHERE serial = ? AND action = 'certificate.issue'`, s) != 0 {
			t.Errorf("failed issuance %s left an inventory row or an issuance event (half-written)", s)
		}
	}
}

// TestFullDisk: the SQLite file on a filesystem that fills up. Issuance
// fails closed (503, nothing handed out, Vault's certificate revoked, no
// half-written row), /readyz says the store is unavailable, and when space
// is freed the same process recovers: issuance works, nothing handed out
// is missing and the audit chain verifies.
func TestFullDisk(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	dir := mountTmpfs(t, "8m")
	p := startPortal(t, v, map[string]string{"CERTPORTAL_DB": filepath.Join(dir, "certportal.db"), "CERTPORTAL_MAX_ACTIVE": "100"})
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	var served, failed []string
	if a := tryIssue(t, v, b, "en"); a.served == "" {
		t.Fatalf("issue before the disk is full: %d", a.status)
	} else {
		served = append(served, a.served)
	}
	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	full := time.Now()
	t.Logf("filesystem full")

	// SQLite may still commit into WAL space it already has; the first
	// commit that needs more fails, and from then on every issuance does.
	var firstFail time.Duration
	langs := []i18n.Lang{i18n.English, i18n.Korean}
	var crlNow []string
	for i := 0; len(failed) < 4; i++ {
		if i == 40 {
			t.Fatalf("40 issuances on a full filesystem, %d failed", len(failed))
		}
		lang := langs[len(failed)%2]
		a := tryIssue(t, v, b, string(lang))
		if a.served != "" {
			served = append(served, a.served)
			continue
		}
		if firstFail == 0 {
			firstFail = time.Since(full)
		}
		crlNow = crl(t, v)
		checkFailedClosed(t, v, a, lang, crlNow)
		if a.signed != "" {
			failed = append(failed, a.signed)
		} else {
			failed = append(failed, "") // refused before Vault was asked
		}
	}
	signed := len(slices.DeleteFunc(slices.Clone(failed), func(s string) bool { return s == "" }))
	t.Logf("full disk: first failed issuance %s after the disk filled; %d issuances served meanwhile, %d failed (%d after Vault signed, each revoked; the rest before Vault was asked)",
		firstFail.Round(time.Millisecond), len(served)-1, len(failed), signed)
	if r := b.get("/readyz"); r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "store: unavailable") {
		t.Fatalf("readyz with a full disk: %d %q", r.StatusCode, r.Body)
	}
	if !strings.Contains(p.Logs.String(), "full") {
		t.Errorf("the log never says the disk is full")
	}

	// Space again: the same process recovers.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	for {
		r := b.get("/readyz")
		if r.StatusCode == http.StatusOK {
			break
		}
		if time.Since(freed) > 30*time.Second {
			t.Fatalf("readyz did not recover within 30s of space being freed: %d %q", r.StatusCode, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	recovered := time.Since(freed)
	a := tryIssue(t, v, b, "en")
	if a.served == "" {
		t.Fatalf("issue after space was freed: %d %s", a.status, a.body)
	}
	served = append(served, a.served)
	t.Logf("full disk: /readyz 200 again %s after space was freed; issuance works", recovered.Round(time.Millisecond))

	db := openSQLite(t, p.DB)
	count := func(query, serial string) int {
		var n int
		if err := db.QueryRow(query, serial).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	checkInventory(t, count, "?", served, slices.DeleteFunc(failed, func(s string) bool { return s == "" }))
	if out, err := verifyChain(p.DB); err != nil || !strings.Contains(out, "audit chain verified") {
		t.Fatalf("audit verify after recovery: %v %s", err, out)
	}
}

// outcome is one request of the load: when it ended and what it got.
type outcome struct {
	worker    int
	began, at time.Time
	status    int
	served    string // serial of the .p12 handed out
}

// loadWorker issues certificates with b until stop closes, revoking each
// one it gets (so the cap never fills), and sends every outcome to out.
func loadWorker(id int, b *client, stop <-chan struct{}, out chan<- outcome) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		req, _ := http.NewRequest(http.MethodPost, b.base+"/certificates", strings.NewReader(issueForm(p12Password, p12Password, "720h0m0s", "modern").Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		o := outcome{worker: id, began: time.Now()}
		resp, err := b.c.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			o.status = resp.StatusCode
			if rerr == nil && resp.Header.Get("Content-Type") == "application/x-pkcs12" {
				if _, cert, _, err := pkcs12.DecodeChain(body, p12Password); err == nil {
					o.served = vault.FormatSerial(cert.SerialNumber.Bytes())
				}
			}
		}
		o.at = time.Now()
		out <- o
		if o.served != "" {
			form := strings.NewReader("reason=superseded")
			req, _ := http.NewRequest(http.MethodPost, b.base+"/certificates/"+o.served+"/revoke", form)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if resp, err := b.c.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
}

// TestPostgresRestart: PostgreSQL restarted (fast shutdown, as an operator's
// restart or a failover does) under a steady load of issuances on two
// portal replicas. During the outage every issuance fails closed (503,
// nothing handed out, every certificate Vault signed and the portal did
// not hand out is revoked); when the server is back the same processes
// recover through their pools, nothing handed out is missing, and the
// trail both replicas wrote verifies as one chain.
func TestPostgresRestart(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	srv := pgtest.StartServer(t)
	dsn := pgtest.NewDatabase(t, srv.DSN())
	env := map[string]string{"CERTPORTAL_DB": dsn, "CERTPORTAL_MAX_ACTIVE": "100"}
	p1, p2 := startPortal(t, v, env), startPortal(t, v, env)
	var workers []*client
	for _, p := range []*runningPortal{p1, p2} {
		for _, user := range []string{"alice", "bob"} {
			b := newBrowser(t, p.URL)
			b.mustLogin(user, v.Password(t, user))
			workers = append(workers, b)
		}
	}
	existing := certSet(t, v) // the CA's own, and nothing else yet
	stop := make(chan struct{})
	out := make(chan outcome, 1024)
	var wg sync.WaitGroup
	for i, b := range workers {
		wg.Add(1)
		go func() { defer wg.Done(); loadWorker(i, b, stop, out) }()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait(); close(out) })
	t.Cleanup(stopLoad)

	var all []outcome
	// waitFor reads outcomes until cond holds for the ones read so far.
	waitFor := func(what string, cond func(o outcome) bool) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			select {
			case o := <-out:
				all = append(all, o)
				if cond(o) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s within 60s", what)
			}
		}
	}
	served := 0
	waitFor("8 issuances before the restart", func(o outcome) bool {
		if o.served != "" {
			served++
		}
		return served >= 8
	})

	srv.Down(t)
	down := time.Now()
	failedDuring := 0
	waitFor("8 failed issuances with PostgreSQL down", func(o outcome) bool {
		if o.at.After(down) && o.served == "" {
			failedDuring++
		}
		return failedDuring >= 8
	})
	var firstFail time.Time
	for _, o := range all {
		if o.at.After(down) && o.served == "" && firstFail.IsZero() {
			firstFail = o.at
		}
	}
	for _, p := range []*runningPortal{p1, p2} {
		if r := newBrowser(t, p.URL).get("/readyz"); r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "store: unavailable") {
			t.Fatalf("readyz with PostgreSQL down: %d %q", r.StatusCode, r.Body)
		}
	}

	// The server takes connections before Up has seen it do so: a
	// certificate handed out between these two moments was handed out
	// with PostgreSQL up (a CI run counted one as "while down", handed
	// out 5 ms before Up returned).
	starting := time.Now()
	srv.Up(t)
	up := time.Now()
	// Every worker (both replicas) issues again, in the same processes.
	var recoveredAt time.Time
	okAfter := map[int]int{}
	waitFor("every worker issuing again after PostgreSQL is back", func(o outcome) bool {
		if o.served != "" && recoveredAt.IsZero() {
			// Requests that came while the server was starting wait for it.
			recoveredAt = o.at
		}
		if o.began.After(up) && o.served != "" {
			okAfter[o.worker]++
		}
		for i := range workers {
			if okAfter[i] < 2 {
				return false
			}
		}
		return true
	})
	stopLoad()
	for o := range out {
		all = append(all, o)
	}

	// Outcomes: handed out, failed while down, failed after it was back.
	var handed []string
	failedDown, failedAfterUp, okDuringDown := 0, 0, 0
	for _, o := range all {
		switch {
		case o.served != "":
			handed = append(handed, o.served)
			if o.began.After(firstFail) && o.at.Before(starting) {
				okDuringDown++
			}
		case o.began.After(up):
			failedAfterUp++
		case o.at.After(down):
			failedDown++
		}
		if o.served == "" && o.status != http.StatusServiceUnavailable {
			t.Errorf("a failed issuance answered %d, want the 503 page", o.status)
		}
	}
	t.Logf("postgres restart: first issuance failed %s after the shutdown; %d failed while down, %d handed out after the first failure; server down for %s; first certificate handed out again %s after it was started (%s before Up saw it take connections); %d that began after that failed; %d handed out in all",
		firstFail.Sub(down).Round(time.Millisecond), failedDown, okDuringDown, starting.Sub(down).Round(time.Millisecond),
		recoveredAt.Sub(starting).Round(time.Millisecond), up.Sub(starting).Round(time.Millisecond), failedAfterUp, len(handed))
	if okDuringDown > 0 {
		t.Errorf("%d certificates handed out while PostgreSQL was down", okDuringDown)
	}
	if failedAfterUp > 0 {
		t.Errorf("%d issuances failed after PostgreSQL was back: the pools handed out connections the restart had closed", failedAfterUp)
	}
	for _, p := range []*runningPortal{p1, p2} {
		if r := newBrowser(t, p.URL).get("/readyz"); r.StatusCode != http.StatusOK {
			t.Fatalf("readyz after PostgreSQL is back: %d %q", r.StatusCode, r.Body)
		}
	}

	// A restart between two requests, which no request saw: the pools
	// still hold connections it closed. The next request on each replica
	// should not be the one that finds out (connLoss, BeginRetry); one run
	// in about ten on a loaded machine still had it fail once per replica,
	// so a failure is logged with its cause and the retry must work.
	srv.Down(t)
	srv.Up(t)
	quietFailed := 0
	for i, b := range workers {
		a := tryIssue(t, v, b, "en")
		if a.served == "" {
			quietFailed++
			logs := []*runningPortal{p1, p2}[i/2].Logs.String()
			cause := logs[strings.LastIndex(logs, "request failed")+1:]
			cause, _, _ = strings.Cut(cause, "\n")
			t.Logf("worker %d: first issuance after a restart nobody saw: %d (%s)", i, a.status, cause)
			if a = tryIssue(t, v, b, "en"); a.served == "" {
				t.Fatalf("worker %d: second issuance after a restart nobody saw: %d", i, a.status)
			}
		}
		handed = append(handed, a.served)
	}
	t.Logf("postgres restart nobody saw: %d of %d first requests failed", quietFailed, len(workers))

	// Nothing lost, nothing half-written, nothing usable left behind.
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	count := func(query, serial string) int {
		var n int
		if err := conn.QueryRow(context.Background(), query, serial).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	revoked := crl(t, v)
	var notHanded []string
	for s := range certSet(t, v) {
		if !existing[s] && !slices.Contains(handed, s) {
			notHanded = append(notHanded, s)
			if !slices.Contains(revoked, s) {
				t.Errorf("certificate %s Vault signed and nobody received is not revoked", s)
			}
		}
	}
	checkInventory(t, count, "$1", handed, notHanded)
	if out, err := verifyChain(dsn); err != nil || !strings.Contains(out, "audit chain verified") {
		t.Fatalf("audit verify after the restart: %v %s", err, out)
	}
	t.Logf("postgres restart: %d certificates Vault signed that nobody received, all revoked, none in the inventory", len(notHanded))
}
