package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
	"github.com/certportal/certportal/internal/vault"
)

// shortLivedSecretID gives the portal's AppRole secret ids a lifetime of
// ttl and its tokens one of a few seconds (so that the portal logs in again
// all the time, as it would every 4 h in production), writes a new secret id
// with that lifetime to a file of its own and returns the file and the
// secret id's expiry.
func shortLivedSecretID(t *testing.T, v *testenv.Vault, ttl time.Duration) (string, time.Time) {
	t.Helper()
	role := "auth/approle/role/certportal"
	if _, err := v.Admin.Logical().Write(role, map[string]any{
		"secret_id_ttl": int(ttl / time.Second), "token_ttl": 3, "token_max_ttl": 3,
	}); err != nil {
		t.Fatal(err)
	}
	gen, err := v.Admin.Logical().Write(role+"/secret-id", map[string]any{"metadata": `{"created_by":"test"}`})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(file, []byte(gen.Data["secret_id"].(string)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, time.Now().Add(ttl)
}

// portalRound is what users and the portal's identity do in one go, without
// failing the test (the caller counts): /readyz, a fresh login, an issuance
// and revoking that certificate (revocation is the portal's own identity).
func portalRound(base, password string) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	call := func(method, path string, form url.Values, want int) ([]byte, error) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, base+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			return nil, fmt.Errorf("%s %s: status %d, want %d", method, path, resp.StatusCode, want)
		}
		return b, nil
	}
	if _, err := call(http.MethodGet, "/readyz", nil, http.StatusOK); err != nil {
		return err
	}
	if _, err := call(http.MethodPost, "/login", url.Values{"username": {"alice"}, "password": {password}}, http.StatusSeeOther); err != nil {
		return err
	}
	p12, err := call(http.MethodPost, "/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern"), http.StatusOK)
	if err != nil {
		return err
	}
	_, cert, _, err := pkcs12.DecodeChain(p12, p12Password)
	if err != nil {
		return fmt.Errorf("issued .p12: %v", err)
	}
	serial := vault.FormatSerial(cert.SerialNumber.Bytes())
	_, err = call(http.MethodPost, "/certificates/"+serial+"/revoke", url.Values{"reason": {"lost"}}, http.StatusSeeOther)
	return err
}

// tidySecretIDs asks Vault's AppRole backend to remove expired secret ids
// now. Vault accepts an expired secret id until its tidy has removed it,
// and on its own that runs once a minute (26-29 s after start in devvault,
// then every minute): a test past an expiry asks instead of waiting. The
// tidy runs in the background; secretIDKnown tells when it is done.
func tidySecretIDs(t *testing.T, v *testenv.Vault) {
	t.Helper()
	if _, err := v.Admin.Logical().Write("auth/approle/tidy/secret-id", nil); err != nil {
		t.Fatalf("tidy secret ids: %v", err)
	}
}

// secretIDKnown says whether Vault still holds secret for the portal's role
// (an expired one stays until Vault's tidy removes it).
func secretIDKnown(t *testing.T, v *testenv.Vault, secret string) bool {
	t.Helper()
	look, err := v.Admin.Logical().Write("auth/approle/role/certportal/secret-id/lookup", map[string]any{"secret_id": secret})
	if err != nil {
		t.Fatal(err)
	}
	return look != nil && look.Data != nil
}

// metricNumber reads one unlabelled sample from /metrics; ok false when absent.
func metricNumber(t *testing.T, base, name string) (float64, bool) {
	t.Helper()
	body := string(newBrowser(t, base).get("/metrics").Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f, true
}

type rotationEvent struct {
	Outcome string
	Details map[string]string
}

func rotationEvents(t *testing.T, db *sql.DB, placeholder string) []rotationEvent {
	t.Helper()
	rows, err := db.Query(`SELECT outcome, details FROM audit_events WHERE action = `+placeholder+` ORDER BY id`, "approle.secret_id_rotate")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []rotationEvent
	for rows.Next() {
		var e rotationEvent
		var d string
		if err := rows.Scan(&e.Outcome, &d); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(d), &e.Details); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func successes(evs []rotationEvent) []rotationEvent {
	var out []rotationEvent
	for _, e := range evs {
		if e.Outcome == "success" {
			out = append(out, e)
		}
	}
	return out
}

// TestSecretIDRotation: with a secret id that lives 30 seconds (and
// service tokens of 3 s, so the portal logs in again all the time), the
// running portal issues the next secret id at two thirds of the lifetime,
// puts it in its file, and keeps serving — logins, issuance, /readyz and
// revocation with its own identity — across two rotations and past the
// first secret id's expiry, without a single failed round. Each rotation is
// in the trail (accessors, never the secret id) and the expiry metric
// follows the current secret id.
func TestSecretIDRotation(t *testing.T) {
	t.Parallel()
	v := testenv.StartConfiguredVault(t)
	const ttl = 30 * time.Second
	file, firstExpiry := shortLivedSecretID(t, v, ttl)
	first := readTrimmed(t, file)
	// What a rotation killed between write and rename leaves: the new
	// secret id in a temporary file beside the file. Start-up removes it.
	stale := filepath.Join(filepath.Dir(file), ".certportal-secret-id-12345")
	if err := os.WriteFile(stale, []byte(first+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	p := startPortal(t, v, map[string]string{"CERTPORTAL_APPROLE_SECRET_ID": "", "CERTPORTAL_APPROLE_SECRET_ID_FILE": file})
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the temporary secret file a crash left is still there after start-up (%v)", err)
	}
	db := openSQLite(t, p.DB)
	pw := v.Password(t, "alice")

	if exp, ok := metricNumber(t, p.URL, "certportal_approle_secret_id_expiry_timestamp_seconds"); !ok || exp < float64(firstExpiry.Unix()-5) || exp > float64(firstExpiry.Unix()+5) {
		// The first check runs at start; the metric may need a moment.
		pollUntil(t, 30*time.Second, "the expiry metric", func() bool {
			exp, ok = metricNumber(t, p.URL, "certportal_approle_secret_id_expiry_timestamp_seconds")
			return ok && exp > float64(firstExpiry.Unix()-5) && exp < float64(firstExpiry.Unix()+5)
		})
	}

	rounds, failures := 0, []string{}
	// Vault refuses an expired secret id once its tidy has removed it:
	// until then it would still log in. Past the expiry the test asks for
	// the tidy rather than wait for Vault's own, once a minute.
	deadline := time.Now().Add(4*ttl + 2*time.Minute)
	var gone time.Time
	for {
		if err := portalRound(p.URL, pw); err != nil {
			failures = append(failures, time.Now().Format("15:04:05.000")+" "+err.Error())
		}
		rounds++
		if gone.IsZero() && time.Now().After(firstExpiry) {
			if !secretIDKnown(t, v, first) {
				gone = time.Now()
			} else {
				tidySecretIDs(t, v)
			}
		}
		evs := successes(rotationEvents(t, db, "?"))
		// Two rotations, and the first secret id gone from Vault for
		// longer than a service token lives: every login since used a
		// rotated one.
		if len(evs) >= 2 && !gone.IsZero() && time.Since(gone) > 5*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d rounds: %d rotations recorded, want 2; %d failed rounds, the first: %v", rounds, len(evs), len(failures), failures[:min(len(failures), 5)])
		}
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d rounds failed across the rotations:\n%s\nlog:\n%s", len(failures), rounds, strings.Join(failures, "\n"), p.Logs.String())
	}
	t.Logf("%d rounds, no failure, across two rotations and the first secret id's expiry (%s after it, Vault no longer knew it)", rounds, gone.Sub(firstExpiry).Round(time.Second))

	cur := readTrimmed(t, file)
	if cur == first {
		t.Fatal("the secret id file still holds the first secret id")
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret id file mode %v (%v), want 0600", st.Mode(), err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(file)); len(ents) != 1 {
		t.Fatalf("files left beside the secret id: %v", ents)
	}
	anon := v.ClientFrom(t, "127.0.0.1", "")
	if _, err := appRoleLogin(anon, v.Setup.ServiceRoleID, first); err == nil {
		t.Fatal("the first secret id still logs in after its expiry")
	}
	if _, err := appRoleLogin(anon, v.Setup.ServiceRoleID, cur); err != nil {
		t.Fatalf("the current secret id does not log in: %v", err)
	}
	evs := successes(rotationEvents(t, db, "?"))
	if evs[0].Details["old_accessor"] == "" || evs[0].Details["new_accessor"] != evs[1].Details["old_accessor"] || evs[0].Details["file"] != file {
		t.Fatalf("rotation events do not chain: %+v", evs)
	}
	look, err := v.Admin.Logical().Write("auth/approle/role/certportal/secret-id/lookup", map[string]any{"secret_id": cur})
	if err != nil || look == nil {
		t.Fatal(err)
	}
	exp, _ := metricNumber(t, p.URL, "certportal_approle_secret_id_expiry_timestamp_seconds")
	if want, _ := time.Parse(time.RFC3339, look.Data["expiration_time"].(string)); int64(exp) < want.Unix()-2 || int64(exp) > want.Unix()+2 {
		t.Fatalf("expiry metric %v, current secret id expires %v", exp, want)
	}
	if n, _ := metricNumber(t, p.URL, `certportal_approle_secret_id_rotations_total{result="rotated"}`); n < 2 {
		t.Fatalf("rotations_total{rotated} = %v", n)
	}
	var trail string
	if err := db.QueryRow(`SELECT group_concat(details, ' ') FROM audit_events`).Scan(&trail); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{first, cur} {
		if strings.Contains(trail, s) || strings.Contains(p.Logs.String(), s) {
			t.Fatal("a secret id reached the trail or the log")
		}
	}
}

// TestSecretIDInlineOnlyAlerts: a secret id the portal cannot replace
// (inline, as from a read-only mounted secret) is not rotated: the portal
// alerts (metric, log, one trail event) and, once the secret id expired,
// what it does with its own identity fails — which is what the rotation in
// TestSecretIDRotation prevents.
func TestSecretIDInlineOnlyAlerts(t *testing.T) {
	t.Parallel()
	v := testenv.StartConfiguredVault(t)
	const ttl = 20 * time.Second
	file, expiry := shortLivedSecretID(t, v, ttl)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_APPROLE_SECRET_ID": readTrimmed(t, file)})
	db := openSQLite(t, p.DB)
	pw := v.Password(t, "alice")

	// Until the expiry every round works.
	for rounds := 0; time.Now().Before(expiry.Add(-2 * time.Second)); rounds++ {
		if err := portalRound(p.URL, pw); err != nil {
			t.Fatalf("round %d failed before the secret id expired: %v", rounds, err)
		}
	}
	// Vault refuses the expired secret id once its tidy removed it: asked
	// for here, not waited for (it runs once a minute by itself).
	secret := readTrimmed(t, file)
	pollUntil(t, time.Minute, "Vault's tidy removing the expired secret id", func() bool {
		if !time.Now().After(expiry) || secretIDKnown(t, v, secret) {
			if time.Now().After(expiry) {
				tidySecretIDs(t, v)
			}
			return false
		}
		return true
	})
	// The portal's token lives 3 s; its next login as itself fails, and
	// nothing can replace the inline secret id.
	var lastErr error
	pollUntil(t, time.Minute, "a failing round once Vault no longer knows the secret id", func() bool {
		lastErr = portalRound(p.URL, pw)
		return lastErr != nil
	})
	if !strings.Contains(lastErr.Error(), "/revoke") {
		t.Fatalf("after expiry the failure is %v, want the revocation (the portal's own identity)", lastErr)
	}
	// Users' own work still goes on: login and issuance need no AppRole.
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", pw)
	b.issue("modern")
	if n, _ := metricNumber(t, p.URL, `certportal_approle_secret_id_rotations_total{result="not_writable"}`); n < 1 {
		t.Fatalf("rotations_total{not_writable} = %v", n)
	}
	// The expiry metric is in the past (0 when the portal's token could
	// still ask Vault, the last expiry seen when it could not): the alert
	// fires either way.
	if exp, ok := metricNumber(t, p.URL, "certportal_approle_secret_id_expiry_timestamp_seconds"); !ok || exp > float64(time.Now().Unix()) {
		t.Fatalf("expiry metric %v (%v) after the secret id expired", exp, ok)
	}
	evs := rotationEvents(t, db, "?")
	if len(evs) == 0 || evs[0].Outcome != "failure" || !strings.Contains(evs[0].Details["why"], "not writable") || len(successes(evs)) != 0 {
		t.Fatalf("rotation events %+v, want a failure saying it is not writable", evs)
	}
	if !strings.Contains(p.Logs.String(), "only alerts") {
		t.Fatalf("no alert in the log:\n%s", p.Logs.String())
	}
}

// TestSecretIDRotationReplicas: two replicas on one PostgreSQL database
// reading one secret id file rotate it once per lifetime between them (the
// store's lock, per secret id), and both keep serving past the first
// secret id's expiry: the other replica picks the new file up.
func TestSecretIDRotationReplicas(t *testing.T) {
	t.Parallel()
	v := testenv.StartConfiguredVault(t)
	dsn := pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
	const ttl = 30 * time.Second
	file, firstExpiry := shortLivedSecretID(t, v, ttl)
	env := map[string]string{"CERTPORTAL_DB": dsn, "CERTPORTAL_APPROLE_SECRET_ID": "", "CERTPORTAL_APPROLE_SECRET_ID_FILE": file}
	a, b := startPortal(t, v, env), startPortal(t, v, env)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	pw := v.Password(t, "alice")

	first := readTrimmed(t, file)
	var failures []string
	var gone time.Time
	deadline := time.Now().Add(4*ttl + 2*time.Minute)
	for rounds := 0; ; rounds++ {
		for _, p := range []*runningPortal{a, b} {
			if err := portalRound(p.URL, pw); err != nil {
				failures = append(failures, p.URL+" "+err.Error())
			}
		}
		if gone.IsZero() && time.Now().After(firstExpiry) {
			if !secretIDKnown(t, v, first) {
				gone = time.Now()
			} else {
				tidySecretIDs(t, v)
			}
		}
		if len(successes(rotationEvents(t, db, "$1"))) >= 2 && !gone.IsZero() && time.Since(gone) > 5*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d rounds: rotations %+v; %d failed rounds, the first: %v", rounds, rotationEvents(t, db, "$1"), len(failures), failures[:min(len(failures), 5)])
		}
	}
	if len(failures) > 0 {
		t.Fatalf("rounds failed across the rotations:\n%s\nlogs:\n%s\n%s", strings.Join(failures, "\n"), a.Logs.String(), b.Logs.String())
	}
	evs := successes(rotationEvents(t, db, "$1"))
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[e.Details["old_accessor"]] {
			t.Fatalf("secret id %s rotated twice: %+v", e.Details["old_accessor"], evs)
		}
		seen[e.Details["old_accessor"]] = true
	}
	for _, p := range []*runningPortal{a, b} {
		if exp, ok := metricNumber(t, p.URL, "certportal_approle_secret_id_expiry_timestamp_seconds"); !ok || exp < float64(time.Now().Unix()) {
			t.Errorf("%s: expiry metric %v %v, want the current secret id's (in the future)", p.URL, exp, ok)
		}
	}
}

// pollUntil polls cond every 200 ms until it holds or timeout passes.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		<-tick.C
	}
}
