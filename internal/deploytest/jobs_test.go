package deploytest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// hookCounter is a webhook receiver that counts the reminders it gets by
// serial.
type hookCounter struct {
	mu       sync.Mutex
	bySerial map[string]int
}

func (h *hookCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var p struct {
		Serial string `json:"serial"`
	}
	b, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(b, &p)
	h.mu.Lock()
	h.bySerial[p.Serial]++
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookCounter) count(serial string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bySerial[serial]
}

// metric reads one sample of a replica's /metrics ("" labels: none).
func (r *replica) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", r.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s has no %s", r.name, name)
	}
	f, _ := strconv.ParseFloat(string(m[1]), 64)
	return f
}

// runs is how many background reconciliations and offboarding sweeps a
// replica has started, whether it ran them or found another replica on it.
func (r *replica) runs(t *testing.T) float64 {
	t.Helper()
	n := 0.0
	for _, res := range []string{"ok", "held", "failed", "skipped"} {
		n += r.metric(t, `certportal_reconcile_runs_total{result="`+res+`"}`)
		n += r.metric(t, `certportal_offboard_sweeps_total{result="`+res+`"}`)
	}
	return n
}

// settle waits until every live replica has started at least three more
// runs of its background jobs: a job that would do the same work twice has
// had the chance to. Counting runs, not waiting a time, keeps it honest on
// a loaded machine.
func settle(t *testing.T, rs ...*replica) {
	t.Helper()
	start := make([]float64, len(rs))
	for i, r := range rs {
		start[i] = r.runs(t)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for i, r := range rs {
		for r.runs(t) < start[i]+6 {
			if time.Now().After(deadline) {
				t.Fatalf("replica %s ran its background jobs %v times in 2 minutes", r.name, r.runs(t)-start[i])
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestBackgroundJobsOnce runs two replicas of the static binary on one
// PostgreSQL with every background job due every second (reminders at
// start and every minute, the least allowed) and counts, from the trail and
// a webhook receiver, how often each piece of work was done: an idle
// session ended (sixty of them), a certificate issued around the portal revoked, a leaver's
// certificates revoked, a reminder sent — each exactly once, before and
// after one replica is SIGKILLed and a new one takes its place.
func TestBackgroundJobsOnce(t *testing.T) {
	bin := staticBinary(t)
	v := testenv.StartConfiguredVault(t)
	dsn := pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
	const vaultTimeout = 2 * time.Second
	grace := config.MinAutoRevokeAfter(vaultTimeout)
	around1 := issueAround(t, v, "alice")
	around1At := time.Now()

	hooks := &hookCounter{bySerial: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hookSrv := &http.Server{Handler: hooks}
	go func() { _ = hookSrv.Serve(ln) }()
	t.Cleanup(func() { hookSrv.Close() })

	const password = "jobs-test password 42"
	// Enough idle sessions that one sweep takes a while (each ends with a
	// Vault call and an audit write): two replicas' sweeps side by side
	// would end some twice.
	const idlePerPhase = 30
	idle := func(phase int) []string {
		var out []string
		for i := range idlePerPhase {
			out = append(out, fmt.Sprintf("idle%d-%02d", phase, i))
		}
		return out
	}
	for _, u := range append(append([]string{"leaver1", "leaver2", "remind1", "remind2"}, idle(1)...), idle(2)...) {
		v.CreateUser(t, u, password, nil, "certportal-user")
	}
	env := v.PortalEnv()
	for k, x := range map[string]string{
		"CERTPORTAL_DB":                          dsn,
		"CERTPORTAL_SESSION_KEY":                 "8f3c0d2b6a1e4f5d9c7b3a2e1f0d4c6b8a9e7f5d3c1b2a4e6f8d0c2b4a6e8f0d",
		"CERTPORTAL_MAX_ACTIVE":                  "100",
		"CERTPORTAL_LOGIN_MAX_FAILURES":          "0",
		"CERTPORTAL_VAULT_TIMEOUT":               vaultTimeout.String(),
		"CERTPORTAL_SESSION_IDLE":                "3s",
		"CERTPORTAL_SESSION_SWEEP":               "1s",
		"CERTPORTAL_RECONCILE_INTERVAL":          "1s",
		"CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER": grace.String(),
		"CERTPORTAL_OFFBOARD_INTERVAL":           "1s",
		"CERTPORTAL_NOTIFY_INTERVAL":             "1m",
		"CERTPORTAL_NOTIFY_WEBHOOK":              "http://" + ln.Addr().String() + "/hook",
		"CERTPORTAL_PUBLIC_URL":                  "https://certs.example.com",
	} {
		env[k] = x
	}
	// The schema first (any command that opens the store migrates it), so
	// that the reminders due are there when the first replica starts.
	if out, err := exec.Command(bin, "audit", "verify", "-db", dsn).CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	db := openTrail(t, dsn)
	// Reminders are read from the inventory: a row due for its 72h
	// reminder, of a user Vault knows (or offboarding would take it).
	addDue := func(user, serial string) {
		t.Helper()
		now := time.Now()
		if _, err := db.Exec(db.q(`INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after)
			VALUES(?, ?, ?, 'ec-256', 'modern', ?, ?, ?)`), serial, user, user+"@example.com", user,
			now.Add(-30*24*time.Hour), now.Add(48*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	addDue("remind1", "0a:0a:0a:01")

	a := startReplica(t, bin, "a", env)
	b := startReplica(t, bin, "b", env)
	login := func(r *replica, user string) *lbClient {
		c := newLBClient(t, "http://"+r.addr)
		c.login(user, password)
		return c
	}
	issue := func(c *lbClient) string {
		t.Helper()
		s, code, err := c.issue()
		if s == "" {
			t.Fatalf("issue: %d %v", code, err)
		}
		return s
	}
	// Before the kill: three sessions go idle, a leaver goes, a reminder
	// and a certificate issued around the portal are due.
	for i, u := range idle(1) {
		login([]*replica{a, b}[i%2], u)
	}
	l1 := login(a, "leaver1")
	leaver1 := []string{issue(l1), issue(l1)}
	if _, err := v.Admin.Logical().Delete("auth/userpass/users/leaver1"); err != nil {
		t.Fatal(err)
	}

	revokedBy := func(serial string) func() bool {
		return func() bool {
			return db.count(t, `SELECT count(*) FROM audit_events WHERE serial = ? AND action = ? AND outcome = ?`,
				serial, audit.ActionRevoke, audit.OutcomeSuccess) > 0
		}
	}
	ended := func(users ...string) func() bool {
		return func() bool {
			for _, u := range users {
				if db.count(t, `SELECT count(*) FROM audit_events WHERE action = ? AND subject = ?`, audit.ActionSessionEnded, u) == 0 {
					return false
				}
			}
			return true
		}
	}
	for _, s := range leaver1 {
		waitFor(t, "leaver1's certificate "+s+" revoked", time.Minute, revokedBy(s))
	}
	waitFor(t, "idle sessions ended", time.Minute, ended(idle(1)...))
	waitFor(t, "reminder for 0a:0a:0a:01", time.Minute, func() bool { return hooks.count("0a:0a:0a:01") > 0 })
	waitFor(t, "certificate issued around the portal revoked", time.Until(around1At.Add(grace+90*time.Second)), revokedBy(around1))
	settle(t, a, b)
	// The second certificate issued around the portal comes due after
	// the kill.
	around2 := issueAround(t, v, "bob")

	// Kill a; c takes its place beside b.
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.exited
	killedAt := time.Now()
	addDue("remind2", "0a:0a:0a:02")
	c := startReplica(t, bin, "c", env)
	for i, u := range idle(2) {
		login([]*replica{b, c}[i%2], u)
	}
	l2 := login(c, "leaver2")
	leaver2 := []string{issue(l2), issue(l2)}
	if _, err := v.Admin.Logical().Delete("auth/userpass/users/leaver2"); err != nil {
		t.Fatal(err)
	}
	for _, s := range leaver2 {
		waitFor(t, "leaver2's certificate "+s+" revoked", time.Minute, revokedBy(s))
	}
	waitFor(t, "idle sessions ended after the kill", time.Minute, ended(idle(2)...))
	waitFor(t, "reminder for 0a:0a:0a:02", 2*time.Minute, func() bool { return hooks.count("0a:0a:0a:02") > 0 })
	waitFor(t, "second certificate issued around the portal revoked", time.Until(killedAt.Add(grace+90*time.Second)), revokedBy(around2))
	// b's next reminder pass comes after remind2 was added: it must find
	// the reminder sent already.
	waitFor(t, "a reminder pass of b after the kill", 2*time.Minute, func() bool {
		return b.metric(t, "certportal_notify_last_success_timestamp_seconds") > float64(killedAt.Unix()+1)
	})
	settle(t, b, c)

	// Each piece of work exactly once.
	type once struct {
		what, query string
		args        []any
		want        int
	}
	var checks []once
	for _, s := range append(append([]string{around1, around2}, leaver1...), leaver2...) {
		checks = append(checks,
			once{"revocation intent of " + s, `SELECT count(*) FROM audit_events WHERE serial = ? AND action = ? AND outcome = ? AND actor = ?`,
				[]any{s, audit.ActionRevoke, audit.OutcomeIntent, portal.ReconcileActor}, 1},
			once{"revocation of " + s, `SELECT count(*) FROM audit_events WHERE serial = ? AND action = ? AND outcome = ? AND actor = ?`,
				[]any{s, audit.ActionRevoke, audit.OutcomeSuccess, portal.ReconcileActor}, 1})
	}
	for _, u := range append(idle(1), idle(2)...) {
		checks = append(checks, once{"session end of " + u, `SELECT count(*) FROM audit_events WHERE action = ? AND subject = ?`,
			[]any{audit.ActionSessionEnded, u}, 1})
	}
	for _, s := range []string{"0a:0a:0a:01", "0a:0a:0a:02"} {
		checks = append(checks, once{"reminder event of " + s, `SELECT count(*) FROM audit_events WHERE action = ? AND serial = ? AND outcome = ?`,
			[]any{audit.ActionNotify, s, audit.OutcomeSuccess}, 1})
	}
	checks = append(checks,
		once{"offboarding sweeps that revoked", `SELECT count(*) FROM audit_events WHERE action = ?`, []any{audit.ActionOffboardSweep}, 2},
		once{"reconciliations that revoked", `SELECT count(*) FROM audit_events WHERE action = ? AND actor = ?`, []any{audit.ActionReconcile, portal.ReconcileActor}, 2})
	for _, ck := range checks {
		if n := db.count(t, ck.query, ck.args...); n != ck.want {
			t.Errorf("%s: %d, want %d", ck.what, n, ck.want)
		}
	}
	for _, s := range []string{"0a:0a:0a:01", "0a:0a:0a:02"} {
		if n := hooks.count(s); n != 1 {
			t.Errorf("reminder for %s delivered %d times, want 1", s, n)
		}
	}
	// Which replica did what: the lock hands the work to whoever is free.
	for _, r := range []*replica{a, b, c} {
		logs := r.logs.String()
		t.Logf("replica %s: %d automatic revocations, %d offboarding sweeps that revoked, %s reconcile runs skipped for another replica",
			r.name, strings.Count(logs, "revoked a certificate issued around the portal"),
			strings.Count(logs, "offboarding sweep revoked certificates"), skipped(t, r))
	}
	out, err := exec.Command(bin, "audit", "verify", "-db", dsn).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit chain verified") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	t.Log(strings.TrimSpace(string(out)))
}

// skipped is how often a live replica found the reconciliation lock taken.
func skipped(t *testing.T, r *replica) string {
	select {
	case <-r.exited:
		return "(killed)"
	default:
	}
	return fmt.Sprint(r.metric(t, `certportal_reconcile_runs_total{result="skipped"}`))
}
