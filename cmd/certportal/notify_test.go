package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/notify"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/smtptest"
)

// TestNotifyProcessHelper is not a test: TestNotifyKilledMidSendSendsNothingTwice
// runs the test binary with CERTPORTAL_NOTIFY_HELPER=1 to get a real
// `certportal notify --once` process it can kill -9. Run normally it does
// nothing.
func TestNotifyProcessHelper(t *testing.T) {
	if os.Getenv("CERTPORTAL_NOTIFY_HELPER") != "1" {
		return
	}
	err := run(context.Background(), []string{"notify", "--once"}, os.Getenv, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "certportal:", err)
		os.Exit(exitCode(err))
	}
	os.Exit(0)
}

func notifyProcess(t *testing.T, env map[string]string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestNotifyProcessHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CERTPORTAL_NOTIFY_HELPER=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// TestNotifyKilledMidSendSendsNothingTwice: `certportal notify --once` is
// killed with SIGKILL while the mail server holds the first message it has
// read (the crash lands between handing the message over and recording it
// sent). The rerun sends the other reminder and not that one again, and
// once its lease has run out the row is marked unknown — in the trail —
// and still not resent.
func TestNotifyKilledMidSendSendsNothingTwice(t *testing.T) {
	ctx := context.Background()
	srv := smtptest.Start(t)
	dbPath := filepath.Join(t.TempDir(), "certportal.db")
	db, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, u := range []string{"alice", "bob"} {
		c := &store.Certificate{Serial: "aa:" + u, Username: u, Subject: u + "@example.com", KeyType: "ec-256", Encryption: "modern",
			IssuedBy: u, IssuedAt: now.Add(-85 * 24 * time.Hour), NotAfter: now.Add(5 * 24 * time.Hour)}
		if err := db.InsertCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	env := map[string]string{
		"CERTPORTAL_DB": dbPath, "CERTPORTAL_SMTP_URL": srv.URL(), "CERTPORTAL_SMTP_CACERT": srv.CAFile,
		"CERTPORTAL_MAIL_FROM": "certportal@example.com", "CERTPORTAL_PUBLIC_URL": "https://portal.example.com",
		// notify --once reads serve's settings; it never logs in to Vault.
		"CERTPORTAL_APPROLE_ROLE_ID": "unused", "CERTPORTAL_APPROLE_SECRET_ID": "unused",
	}

	stalled := srv.Stall()
	first := notifyProcess(t, env)
	var out strings.Builder
	first.Stdout, first.Stderr = &out, &out
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stalled:
	case <-time.After(60 * time.Second):
		first.Process.Kill()
		first.Wait()
		t.Fatalf("no message reached the server:\n%s", out.String())
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := first.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("first run: %v, want killed", err)
	}
	srv.Release()
	got := srv.Mails()
	if len(got) != 1 {
		t.Fatalf("%d messages before the crash, want the 1 stalled", len(got))
	}
	killedFor := got[0].To[0]

	again := notifyProcess(t, env)
	b, err := again.CombinedOutput()
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), "sent 1,") {
		t.Fatalf("rerun output:\n%s", b)
	}
	mails := srv.Mails()
	if len(mails) != 2 || mails[1].To[0] == killedFor {
		t.Fatalf("after the rerun: %d messages (%v then %v); want the other user's once", len(mails), killedFor, mails[len(mails)-1].To)
	}

	// Past the lease: the row the dead process held becomes unknown, recorded, not sent.
	db, err = sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg, err := notify.ParseSMTPURL(srv.URL(), "certportal@example.com", srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	r, err := notify.New(db, notify.Options{Thresholds: []time.Duration{720 * time.Hour, 168 * time.Hour, 72 * time.Hour},
		EmailDomain: "example.com", PublicURL: "https://portal.example.com", Email: &notify.SMTP{Cfg: cfg},
		Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.RunOnce(ctx)
	if err != nil || res.Unknown != 1 || res.Sent != 0 {
		t.Fatalf("after the lease: %v, %v", res, err)
	}
	if n := len(srv.Mails()); n != 2 {
		t.Fatalf("%d messages, want still 2", n)
	}
	var v audit.Verifier
	var outcomes []string
	if err := db.StreamAudit(ctx, store.AuditFilter{Action: audit.ActionNotify}, func(e *audit.Event) error {
		outcomes = append(outcomes, e.Subject+":"+e.Outcome)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.StreamAudit(ctx, store.AuditFilter{}, v.Check); err != nil {
		t.Fatalf("chain: %v", err)
	}
	killedUser := strings.TrimSuffix(killedFor, "@example.com")
	if len(outcomes) != 2 || !slices.Contains(outcomes, killedUser+":failure") {
		t.Fatalf("notification events %v; want the other's success and %s's failure (unknown)", outcomes, killedUser)
	}
}

// TestRemindersInServe: serve's own scheduler sends a due reminder at
// start (and says so in /metrics); a user who logged in in Korean gets the
// reminder of a certificate issued through the portal (real Vault) in
// Korean, its link opens that certificate's renew page, and the dashboard
// and the helpdesk user page list the reminders sent.
func TestRemindersInServe(t *testing.T) {
	ctx := context.Background()
	v := testenv.StartConfiguredVault(t)
	srv := smtptest.Start(t)
	dbPath := filepath.Join(t.TempDir(), "certportal.db")
	db, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// A certificate two days from expiry before serve starts: its first
	// pass owes bob the 72h reminder.
	if err := db.InsertCertificate(ctx, &store.Certificate{Serial: "bb:01", Username: "bob", Subject: "bob@example.com", KeyType: "ec-256",
		Encryption: "modern", IssuedBy: "bob", IssuedAt: now.Add(-88 * 24 * time.Hour), NotAfter: now.Add(2 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	const public = "https://certs.example.com"
	p := startPortal(t, v, map[string]string{
		"CERTPORTAL_DB": dbPath, "CERTPORTAL_SMTP_URL": srv.URL(), "CERTPORTAL_SMTP_CACERT": srv.CAFile,
		"CERTPORTAL_MAIL_FROM": "certportal@example.com", "CERTPORTAL_PUBLIC_URL": public,
	})
	mails := srv.WaitMails(1, 60*time.Second)
	if len(mails) != 1 || mails[0].To[0] != "bob@example.com" || mails[0].Header("Subject") != "Your client certificate expires in 2 days" {
		t.Fatalf("serve's first pass: %d messages %+v", len(mails), mails)
	}
	b := newBrowser(t, p.URL)
	var metricsText string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		metricsText = string(b.get("/metrics").Body)
		if strings.Contains(metricsText, `certportal_notifications_total{channel="email",result="sent"} 1`) &&
			!strings.Contains(metricsText, "certportal_notify_last_success_timestamp_seconds 0\n") {
			break
		}
	}
	if !strings.Contains(metricsText, `certportal_notifications_total{channel="email",result="sent"} 1`) ||
		!strings.Contains(metricsText, "certportal_notify_last_success_timestamp_seconds ") ||
		strings.Contains(metricsText, "certportal_notify_last_success_timestamp_seconds 0\n") {
		t.Fatalf("metrics:\n%s", grepLines(metricsText, "certportal_notif"))
	}

	// alice logs in in Korean and gets a 30-day certificate.
	alice := newBrowser(t, p.URL)
	if r := alice.post("/login?lang=ko", url.Values{"username": {"alice"}, "password": {v.Password(t, "alice")}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", r.StatusCode)
	}
	serial := alice.issue("modern")

	// A runner whose clock is six days before that certificate's expiry,
	// on serve's database, stands in for waiting 24 days.
	db, err = sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c, err := db.GetCertificate(ctx, serial)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := notify.ParseSMTPURL(srv.URL(), "certportal@example.com", srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	r, err := notify.New(db, notify.Options{Thresholds: []time.Duration{720 * time.Hour, 168 * time.Hour, 72 * time.Hour},
		EmailDomain: "example.com", PublicURL: public, Email: &notify.SMTP{Cfg: cfg},
		Now: func() time.Time { return c.NotAfter.Add(-6 * 24 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := r.RunOnce(ctx); err != nil || res.Sent != 1 {
		t.Fatalf("pass: %v, %v", res, err)
	}
	mails = srv.Mails()
	m := mails[len(mails)-1]
	link := public + "/certificates/" + serial + "/renew"
	if m.To[0] != "alice@example.com" || m.Header("Subject") != "클라이언트 인증서가 6일 후 만료됩니다" || !strings.Contains(m.Body(), link) {
		t.Fatalf("alice's reminder: to %v subject %q\n%s", m.To, m.Header("Subject"), m.Body())
	}
	renew := alice.get(strings.TrimPrefix(link, public))
	if renew.StatusCode != http.StatusOK || !strings.Contains(string(renew.Body), serial) {
		t.Fatalf("renew link: %d\n%s", renew.StatusCode, renew.Body)
	}
	home := string(alice.get("/").Body)
	if !strings.Contains(home, `id="reminders"`) || !strings.Contains(home, `data-serial="`+serial+`"`) || !strings.Contains(home, "만료 7일 전") {
		t.Fatalf("dashboard lacks the reminder:\n%s", home)
	}
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	page := string(helen.get("/helpdesk/users/alice?lang=en").Body)
	if !strings.Contains(page, `id="reminders"`) || !strings.Contains(page, `data-serial="`+serial+`"`) || !strings.Contains(page, "7 days before expiry") {
		t.Fatalf("helpdesk user page lacks the reminder:\n%s", page)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
