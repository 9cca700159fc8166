package notify_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/notify"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv/smtptest"
)

// clock is the runner's time, moved by the test instead of waiting.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

const publicURL = "https://portal.example.com"

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "certportal.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func insert(t *testing.T, st store.Store, serial, user string, issued time.Time, ttl time.Duration) *store.Certificate {
	t.Helper()
	c := &store.Certificate{Serial: serial, Username: user, Subject: user + "@example.com", KeyType: "ec-256",
		Encryption: "modern", IssuedBy: user, IssuedAt: issued, NotAfter: issued.Add(ttl)}
	if err := st.InsertCertificate(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return c
}

func smtpSender(t *testing.T, srv *smtptest.Server) *notify.SMTP {
	t.Helper()
	cfg, err := notify.ParseSMTPURL(srv.URL(), "certportal@example.com", srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return &notify.SMTP{Cfg: cfg}
}

func newRunner(t *testing.T, st store.Store, clk *clock, o notify.Options) *notify.Runner {
	t.Helper()
	if o.Thresholds == nil {
		o.Thresholds = []time.Duration{720 * time.Hour, 168 * time.Hour, 72 * time.Hour}
	}
	o.EmailDomain, o.PublicURL, o.Now = "example.com", publicURL, clk.Now
	r, err := notify.New(st, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func runOnce(t *testing.T, r *notify.Runner) notify.Result {
	t.Helper()
	res, err := r.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// verifyChain checks the trail and returns its notification events.
func verifyChain(t *testing.T, st store.Store) []*audit.Event {
	t.Helper()
	var v audit.Verifier
	var out []*audit.Event
	err := st.StreamAudit(context.Background(), store.AuditFilter{}, func(e *audit.Event) error {
		if err := v.Check(e); err != nil {
			return err
		}
		if e.Action == audit.ActionNotify {
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	return out
}

// TestRemindersAtEachThreshold: a 90-day certificate gets the 30-, 7- and
// 3-day reminders and the expired notice, each once, in the owner's last
// UI language, over STARTTLS and AUTH, with a link to its renew page; the
// helpdesk gets a copy of each and the escalation; the trail records each.
func TestRemindersAtEachThreshold(t *testing.T) {
	st := openSQLite(t)
	srv := smtptest.Start(t)
	clk := &clock{t: t0}
	c := &store.Certificate{Serial: "1a:2b:3c", Username: "alice", Subject: "alice@example.com", KeyType: "ec-256",
		Encryption: "modern", IssuedBy: "alice", IssuedAt: t0, NotAfter: t0.Add(90 * 24 * time.Hour), Label: "업무 노트북"}
	if err := st.InsertCertificate(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if err := st.SetUserLanguage(context.Background(), "alice", "ko", t0); err != nil {
		t.Fatal(err)
	}
	r := newRunner(t, st, clk, notify.Options{Email: smtpSender(t, srv), HelpdeskEmail: "helpdesk@example.com", Expired: true})

	steps := []struct {
		left     time.Duration
		subject  string // the owner's, Korean
		helpdesk string
	}{
		{31 * 24 * time.Hour, "", ""},
		{29 * 24 * time.Hour, "클라이언트 인증서가 29일 후 만료됩니다", "Certificate of alice expires in 29 days"},
		{6 * 24 * time.Hour, "클라이언트 인증서가 6일 후 만료됩니다", "Certificate of alice expires in 6 days"},
		{2*24*time.Hour + time.Hour, "클라이언트 인증서가 2일 후 만료됩니다", "Certificate of alice expires in 2 days"},
		{-time.Hour, "클라이언트 인증서가 만료되었습니다", "Escalation: certificate of alice expired unrenewed"},
	}
	total := 0
	for _, step := range steps {
		clk.Set(c.NotAfter.Add(-step.left))
		runOnce(t, r)
		runOnce(t, r) // a second pass at the same moment sends nothing more
		clk.Set(clk.Now().Add(time.Hour))
		runOnce(t, r)
		if step.subject != "" {
			total += 2
		}
		mails := srv.Mails()
		if len(mails) != total {
			t.Fatalf("%v before expiry: %d messages, want %d", step.left, len(mails), total)
		}
		if step.subject == "" {
			continue
		}
		owner, hd := mails[total-2], mails[total-1]
		if owner.To[0] != "helpdesk@example.com" && hd.To[0] == "helpdesk@example.com" {
			// expected order
		} else {
			owner, hd = hd, owner
		}
		if owner.To[0] != "alice@example.com" || !owner.TLS || owner.Auth != smtptest.User || owner.From != "certportal@example.com" {
			t.Fatalf("owner's message: to %v, TLS %v, auth %q, from %q", owner.To, owner.TLS, owner.Auth, owner.From)
		}
		if got := owner.Header("Subject"); got != step.subject {
			t.Errorf("%v: subject %q, want %q", step.left, got, step.subject)
		}
		body := owner.Body()
		for _, want := range []string{"alice", "1a:2b:3c", "“업무 노트북” (alice@example.com)", publicURL + "/certificates/1a:2b:3c/renew", "2027-03-01"} {
			if !strings.Contains(body, want) {
				t.Errorf("%v: body lacks %q:\n%s", step.left, want, body)
			}
		}
		if owner.Header("Content-Language") != "ko" {
			t.Errorf("Content-Language %q", owner.Header("Content-Language"))
		}
		if got := hd.Header("Subject"); got != step.helpdesk || hd.To[0] != "helpdesk@example.com" {
			t.Errorf("%v: helpdesk message %v %q, want %q", step.left, hd.To, got, step.helpdesk)
		}
	}
	events := verifyChain(t, st)
	if len(events) != 8 {
		t.Fatalf("%d notification events in the trail, want 8", len(events))
	}
	for _, e := range events {
		if e.Outcome != audit.OutcomeSuccess || e.Serial != "1a:2b:3c" || e.Subject != "alice" || e.Actor != "certportal" {
			t.Fatalf("event %+v", e)
		}
	}
	list, err := st.ListNotifications(context.Background(), "alice", 50)
	if err != nil || len(list) != 8 {
		t.Fatalf("dashboard list: %d, %v", len(list), err)
	}
}

// TestMissedRunsSendOnlyTheMostUrgent: a portal that was down through the
// 30- and 7-day thresholds sends only the 3-day reminder.
func TestMissedRunsSendOnlyTheMostUrgent(t *testing.T) {
	st := openSQLite(t)
	srv := smtptest.Start(t)
	clk := &clock{t: t0}
	c := insert(t, st, "0b:01", "bob", t0, 90*24*time.Hour)
	r := newRunner(t, st, clk, notify.Options{Email: smtpSender(t, srv)})
	clk.Set(c.NotAfter.Add(-50 * time.Hour))
	res := runOnce(t, r)
	mails := srv.Mails()
	if len(mails) != 1 || res.Sent != 1 {
		t.Fatalf("%d messages (%v), want 1", len(mails), res)
	}
	if got := mails[0].Header("Subject"); got != "Your client certificate expires in 2 days" {
		t.Fatalf("subject %q (English: bob never chose a language)", got)
	}
}

// TestRevokedOrRenewedGetNoReminder: nothing for a revoked certificate, nor
// for one whose owner already has a newer one; a revocation after the
// reminder was recorded but before it went out cancels it.
func TestRevokedOrRenewedGetNoReminder(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	srv := smtptest.Start(t)
	clk := &clock{t: t0}
	revoked := insert(t, st, "0c:01", "carol", t0, 90*24*time.Hour)
	insert(t, st, "0d:01", "dave", t0, 90*24*time.Hour)
	insert(t, st, "0d:02", "dave", t0.Add(80*24*time.Hour), 90*24*time.Hour) // dave renewed
	late := insert(t, st, "0e:01", "erin", t0, 90*24*time.Hour)
	if err := st.MarkRevoked(ctx, revoked.Serial, store.Revocation{At: t0.Add(time.Hour), Reason: "keyCompromise", By: "carol"}); err != nil {
		t.Fatal(err)
	}
	// erin's reminder is recorded while the mail server is down...
	srv.Stop()
	r := newRunner(t, st, clk, notify.Options{Email: smtpSender(t, srv)})
	clk.Set(late.NotAfter.Add(-5 * 24 * time.Hour))
	if res := runOnce(t, r); res.Retried != 1 {
		t.Fatalf("first pass: %v, want erin's reminder retrying", res)
	}
	// ...and she revokes it before the retry.
	if err := st.MarkRevoked(ctx, late.Serial, store.Revocation{At: clk.Now(), Reason: "superseded", By: "erin"}); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	clk.Set(clk.Now().Add(2 * time.Hour))
	res := runOnce(t, r)
	if n := len(srv.Mails()); n != 0 || res.Cancelled != 1 {
		t.Fatalf("%d messages, %v; want none and erin's cancelled", n, res)
	}
	clk.Set(late.NotAfter.Add(time.Hour))
	runOnce(t, r)
	if n := len(srv.Mails()); n != 0 {
		t.Fatalf("%d messages after expiry, want none", n)
	}
}

// TestStoppedMailServerDelaysThenDelivers: with the server down the
// reminder stays due and is retried with backoff; once the server is back
// it arrives, once.
func TestStoppedMailServerDelaysThenDelivers(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	srv := smtptest.Start(t)
	clk := &clock{t: t0}
	c := insert(t, st, "0f:01", "frank", t0, 90*24*time.Hour)
	r := newRunner(t, st, clk, notify.Options{Email: smtpSender(t, srv), FirstRetry: time.Minute})
	srv.Stop()
	clk.Set(c.NotAfter.Add(-6 * 24 * time.Hour))
	if res := runOnce(t, r); res.Retried != 1 || res.Sent != 0 {
		t.Fatalf("server down: %v", res)
	}
	// Before the backoff has passed nothing is tried, even with the server up.
	srv.Restart()
	clk.Set(clk.Now().Add(30 * time.Second))
	if res := runOnce(t, r); res.Retried != 0 || res.Sent != 0 {
		t.Fatalf("within backoff: %v", res)
	}
	srv.Stop()
	clk.Set(clk.Now().Add(time.Minute))
	if res := runOnce(t, r); res.Retried != 1 {
		t.Fatalf("second failure: %v", res)
	}
	list, _ := st.ListNotifications(ctx, "frank", 10)
	if len(list) != 1 || list[0].State != store.NotifyPending || list[0].Attempts != 2 ||
		!list[0].NextAttempt.Equal(clk.Now().Add(2*time.Minute)) || !strings.Contains(list[0].LastError, "connect") {
		t.Fatalf("after two failures: %+v (want pending, 2 attempts, next in 2m)", list[0])
	}
	srv.Restart()
	clk.Set(clk.Now().Add(2 * time.Minute))
	if res := runOnce(t, r); res.Sent != 1 {
		t.Fatalf("server back: %v", res)
	}
	clk.Set(clk.Now().Add(time.Hour))
	runOnce(t, r)
	if n := len(srv.Mails()); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
	events := verifyChain(t, st)
	if len(events) != 1 || events[0].Outcome != audit.OutcomeSuccess || !strings.Contains(events[0].Details, `"attempts":"3"`) {
		t.Fatalf("trail: %+v (retries are not events; the send is, with its attempts)", events)
	}
}

// TestGivesUpAfterMaxAttempts: a final failure is an audit event.
func TestGivesUpAfterMaxAttempts(t *testing.T) {
	st := openSQLite(t)
	srv := smtptest.Start(t)
	srv.Stop()
	clk := &clock{t: t0}
	c := insert(t, st, "10:01", "gina", t0, 90*24*time.Hour)
	r := newRunner(t, st, clk, notify.Options{Email: smtpSender(t, srv), MaxAttempts: 2, FirstRetry: time.Minute})
	clk.Set(c.NotAfter.Add(-6 * 24 * time.Hour))
	if res := runOnce(t, r); res.Retried != 1 {
		t.Fatalf("first attempt: %v, want retrying", res)
	}
	clk.Set(clk.Now().Add(time.Minute))
	if res := runOnce(t, r); res.Failed != 1 {
		t.Fatalf("second attempt: %v, want failed", res)
	}
	events := verifyChain(t, st)
	if len(events) != 1 || events[0].Outcome != audit.OutcomeFailure || !strings.Contains(events[0].Details, "connect") {
		t.Fatalf("trail: %+v", events)
	}
	if strings.Contains(events[0].Details, smtptest.Password) {
		t.Fatal("the SMTP password is in the trail")
	}
}

// TestWebhookPayloads: a real HTTP server receives the generic payload with
// a valid HMAC-SHA256 signature of the body, and the Slack and Teams shapes.
func TestWebhookPayloads(t *testing.T) {
	type got struct {
		body           []byte
		sig, ts, sigV2 string
	}
	var mu sync.Mutex
	var received []got
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		received = append(received, got{b, r.Header.Get(notify.SignatureHeader), r.Header.Get(notify.TimestampHeader), r.Header.Get(notify.SignatureV2Header)})
		mu.Unlock()
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer hook.Close()
	secret := []byte("webhook-shared-secret")
	for _, format := range []string{notify.FormatGeneric, notify.FormatSlack, notify.FormatTeams} {
		t.Run(format, func(t *testing.T) {
			mu.Lock()
			received = nil
			mu.Unlock()
			st := openSQLite(t)
			clk := &clock{t: t0}
			c := insert(t, st, "11:01", "hana", t0, 90*24*time.Hour)
			if err := st.SetUserLanguage(context.Background(), "hana", "en", t0); err != nil {
				t.Fatal(err)
			}
			wh := &notify.Webhook{URL: hook.URL + "/hook/T0K3N", Format: format, Secret: secret}
			r := newRunner(t, st, clk, notify.Options{Webhook: wh})
			clk.Set(c.NotAfter.Add(-6 * 24 * time.Hour))
			if res := runOnce(t, r); res.Sent != 1 {
				t.Fatalf("%v", res)
			}
			runOnce(t, r)
			mu.Lock()
			defer mu.Unlock()
			if len(received) != 1 {
				t.Fatalf("%d posts, want 1", len(received))
			}
			p := received[0]
			if p.sig != notify.Sign(secret, p.body) {
				t.Fatalf("signature %q does not match the body", p.sig)
			}
			// The replay-safe signature, checked as docs/notifications.md
			// tells a receiver to: HMAC-SHA256 of "<timestamp>.<body>",
			// the timestamp the sender's clock (within 5 minutes of ours).
			sent := c.NotAfter.Add(-6 * 24 * time.Hour)
			if p.ts != strconv.FormatInt(sent.Unix(), 10) {
				t.Fatalf("timestamp %q, want the send time %d", p.ts, sent.Unix())
			}
			verify := func(ts string, body []byte) bool {
				mac := hmac.New(sha256.New, secret)
				mac.Write([]byte(ts + "." + string(body)))
				want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
				sec, err := strconv.ParseInt(ts, 10, 64)
				return err == nil && hmac.Equal([]byte(p.sigV2), []byte(want)) && sent.Sub(time.Unix(sec, 0)).Abs() <= 5*time.Minute
			}
			if !verify(p.ts, p.body) {
				t.Fatalf("%s %q does not verify over %q and the body", notify.SignatureV2Header, p.sigV2, p.ts)
			}
			tampered := append([]byte(nil), p.body...)
			tampered[len(tampered)/2] ^= 1
			if verify(p.ts, tampered) || verify(strconv.FormatInt(sent.Unix()+1, 10), p.body) {
				t.Fatal("the V2 signature verifies a changed body or timestamp")
			}
			renew := publicURL + "/certificates/11:01/renew"
			switch format {
			case notify.FormatGeneric:
				var g notify.GenericPayload
				if err := json.Unmarshal(p.body, &g); err != nil {
					t.Fatal(err)
				}
				if g.Event != "certificate.expiring" || g.Serial != "11:01" || g.Username != "hana" || g.Threshold != "168h0m0s" ||
					g.RenewURL != renew || g.NotAfter != c.NotAfter.Format(time.RFC3339) || g.Language != "en" ||
					g.Title != "Your client certificate expires in 6 days" {
					t.Fatalf("generic payload %+v", g)
				}
			case notify.FormatSlack:
				var s struct {
					Text string `json:"text"`
				}
				if err := json.Unmarshal(p.body, &s); err != nil || !strings.Contains(s.Text, renew) || !strings.HasPrefix(s.Text, "Your client certificate expires in 6 days") {
					t.Fatalf("slack payload %s (%v)", p.body, err)
				}
			case notify.FormatTeams:
				var m struct {
					Type        string `json:"type"`
					Attachments []struct {
						ContentType string `json:"contentType"`
						Content     struct {
							Type    string `json:"type"`
							Version string `json:"version"`
							Body    []struct {
								Type    string
								Inlines []struct{ Type, Text string }
							} `json:"body"`
							Actions []struct {
								Type, Title, URL string
							} `json:"actions"`
						} `json:"content"`
					} `json:"attachments"`
				}
				if err := json.Unmarshal(p.body, &m); err != nil {
					t.Fatal(err)
				}
				if m.Type != "message" || len(m.Attachments) != 1 || m.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" {
					t.Fatalf("teams payload %s", p.body)
				}
				card := m.Attachments[0].Content
				if card.Type != "AdaptiveCard" || len(card.Body) < 2 || card.Body[0].Type != "RichTextBlock" || len(card.Body[0].Inlines) != 1 ||
					card.Body[0].Inlines[0].Text != "Your client certificate expires in 6 days" ||
					len(card.Actions) != 1 || card.Actions[0].Type != "Action.OpenUrl" || card.Actions[0].URL != renew {
					t.Fatalf("teams card %s", p.body)
				}
			}
		})
	}
}

// TestWebhookErrorsHideTheURL: a webhook URL is a credential (Slack, Teams);
// a failing post names neither it nor its token.
func TestWebhookErrorsHideTheURL(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	url := hook.URL + "/hook/T0K3N"
	hook.Close()
	st := openSQLite(t)
	clk := &clock{t: t0}
	c := insert(t, st, "12:01", "ivan", t0, 90*24*time.Hour)
	r := newRunner(t, st, clk, notify.Options{Webhook: &notify.Webhook{URL: url, Format: notify.FormatGeneric}, MaxAttempts: 1})
	clk.Set(c.NotAfter.Add(-6 * 24 * time.Hour))
	if res := runOnce(t, r); res.Failed != 1 {
		t.Fatalf("%v", res)
	}
	events := verifyChain(t, st)
	if len(events) != 1 || strings.Contains(events[0].Details, "T0K3N") || strings.Contains(events[0].Details, "/hook") {
		t.Fatalf("trail: %+v", events)
	}
}

// TestSMTPURLSettings: TLS is required except for a loopback relay, and
// credentials never travel without it; errors do not echo the password.
func TestSMTPURLSettings(t *testing.T) {
	for _, tc := range []struct {
		url, err string
	}{
		{"smtp://u:pw@mail.example.com:587", ""},
		{"smtps://u:pw@mail.example.com", ""},
		{"smtp://127.0.0.1:25?starttls=off", ""},
		{"smtp://mail.example.com:25?starttls=off", "loopback"},
		{"smtp://u:pw@127.0.0.1:25?starttls=off", "only over TLS"},
		{"http://mail.example.com", "scheme"},
		{"smtp://u:pw@mail.example.com:587?x=1", "unknown parameter"},
	} {
		_, err := notify.ParseSMTPURL(tc.url, "certportal@example.com", "")
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %v, want %q", tc.url, err, tc.err)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("%s: error shows the password: %v", tc.url, err)
		}
	}
	// A server that does not offer STARTTLS is refused, not used in clear.
	cfg, _ := notify.ParseSMTPURL("smtps://u:pw@127.0.0.1:1", "certportal@example.com", "")
	if s := cfg.String(); strings.Contains(s, "pw") {
		t.Fatalf("String shows the password: %s", s)
	}
}

// TestWebhookLabelIsNotMarkup: a label is the employee's own text, and the
// Slack and Teams payloads go to a shared channel. Slack reads <…> in text
// as a link or a mention (<!channel>) and Teams' TextBlock reads Markdown
// ([text](url)): a label must reach the channel as the characters typed,
// never as a ping or a link the portal's bot appears to vouch for.
func TestWebhookLabelIsNotMarkup(t *testing.T) {
	// 64 characters: a label the portal accepts (at most 64).
	const label = `<!channel> <https://evil.ex/r|Renew> [Renew](https://ev.il) &amp`
	var mu sync.Mutex
	var bodies [][]byte
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
	}))
	defer hook.Close()
	for _, format := range []string{notify.FormatSlack, notify.FormatTeams} {
		t.Run(format, func(t *testing.T) {
			mu.Lock()
			bodies = nil
			mu.Unlock()
			st := openSQLite(t)
			clk := &clock{t: t0}
			c := &store.Certificate{Serial: "13:01", Username: "mallory", Subject: "mallory@example.com", KeyType: "ec-256",
				Encryption: "modern", IssuedBy: "mallory", IssuedAt: t0, NotAfter: t0.Add(90 * 24 * time.Hour), Label: label}
			if err := st.InsertCertificate(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			r := newRunner(t, st, clk, notify.Options{Webhook: &notify.Webhook{URL: hook.URL, Format: format}})
			clk.Set(c.NotAfter.Add(-6 * 24 * time.Hour))
			if res := runOnce(t, r); res.Sent != 1 {
				t.Fatalf("%v", res)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(bodies) != 1 {
				t.Fatalf("%d posts, want 1", len(bodies))
			}
			switch format {
			case notify.FormatSlack:
				var s struct {
					Text string `json:"text"`
				}
				if err := json.Unmarshal(bodies[0], &s); err != nil {
					t.Fatal(err)
				}
				// Slack's escaping: &, < and > as entities, nothing else.
				want := "&lt;!channel&gt; &lt;https://evil.ex/r|Renew&gt; [Renew](https://ev.il) &amp;amp"
				if strings.Contains(s.Text, "<") || strings.Contains(s.Text, ">") || !strings.Contains(s.Text, want) {
					t.Fatalf("slack text carries the label as markup:\n%s", s.Text)
				}
				if !strings.Contains(s.Text, publicURL+"/certificates/13:01/renew") {
					t.Fatalf("slack text lost the renew link:\n%s", s.Text)
				}
			case notify.FormatTeams:
				// Every element that shows the label must be one Teams does
				// not read as Markdown: a TextRun of a RichTextBlock.
				var card struct {
					Attachments []struct {
						Content struct {
							Body []map[string]any `json:"body"`
						} `json:"content"`
					} `json:"attachments"`
				}
				if err := json.Unmarshal(bodies[0], &card); err != nil || len(card.Attachments) != 1 {
					t.Fatalf("teams payload %s (%v)", bodies[0], err)
				}
				shown := ""
				for _, el := range card.Attachments[0].Content.Body {
					if el["type"] != "RichTextBlock" {
						t.Fatalf("body element of type %v: Teams reads its text as Markdown: %s", el["type"], bodies[0])
					}
					inlines, _ := el["inlines"].([]any)
					for _, in := range inlines {
						run, _ := in.(map[string]any)
						if run["type"] != "TextRun" {
							t.Fatalf("inline %v", in)
						}
						shown += run["text"].(string) + "\n"
					}
				}
				if !strings.Contains(shown, label) || !strings.Contains(shown, "Your client certificate expires in 6 days") {
					t.Fatalf("the card does not show the label as typed:\n%s", shown)
				}
			}
		})
	}
}
