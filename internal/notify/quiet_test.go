package notify_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/notify"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/testenv/smtptest"
)

func quiet(t *testing.T, window, tz, channels string) *notify.QuietHours {
	t.Helper()
	q, err := config.ParseQuietHours(window, tz, channels)
	if err != nil {
		t.Fatal(err)
	}
	return &notify.QuietHours{Start: q.Start, End: q.End, Loc: q.Loc, Channels: q.Channels}
}

// TestQuietHoursWindow: the window is read on the zone's wall clock, may
// wrap past midnight, and ends where it says (DST included).
func TestQuietHoursWindow(t *testing.T) {
	seoul, _ := time.LoadLocation("Asia/Seoul")
	berlin, _ := time.LoadLocation("Europe/Berlin")
	for _, tc := range []struct {
		name, window, tz string
		at               time.Time
		in               bool
		until            time.Time
	}{
		{"before the evening start", "22:00-07:00", "Asia/Seoul", time.Date(2026, 12, 1, 21, 59, 0, 0, seoul), false, time.Time{}},
		{"at the start", "22:00-07:00", "Asia/Seoul", time.Date(2026, 12, 1, 22, 0, 0, 0, seoul), true, time.Date(2026, 12, 2, 7, 0, 0, 0, seoul)},
		{"after midnight", "22:00-07:00", "Asia/Seoul", time.Date(2026, 12, 2, 3, 0, 0, 0, seoul), true, time.Date(2026, 12, 2, 7, 0, 0, 0, seoul)},
		{"at the end", "22:00-07:00", "Asia/Seoul", time.Date(2026, 12, 2, 7, 0, 0, 0, seoul), false, time.Time{}},
		{"a UTC instant in Seoul's night", "22:00-07:00", "Asia/Seoul", time.Date(2026, 12, 1, 14, 30, 0, 0, time.UTC), true, time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)},
		{"a daytime window", "12:00-13:30", "UTC", time.Date(2026, 12, 1, 13, 29, 0, 0, time.UTC), true, time.Date(2026, 12, 1, 13, 30, 0, 0, time.UTC)},
		{"to midnight", "20:00-24:00", "UTC", time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC), true, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)},
		// The night clocks go forward in Berlin (2027-03-28): 07:00 CEST.
		{"across a DST change", "22:00-07:00", "Europe/Berlin", time.Date(2027, 3, 27, 23, 0, 0, 0, berlin), true, time.Date(2027, 3, 28, 7, 0, 0, 0, berlin)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := quiet(t, tc.window, tc.tz, "")
			if got := q.In(tc.at); got != tc.in {
				t.Fatalf("In(%v) = %v, want %v", tc.at, got, tc.in)
			}
			want := tc.until
			if !tc.in {
				want = tc.at
			}
			if got := q.Until(tc.at); !got.Equal(want) {
				t.Fatalf("Until(%v) = %v, want %v", tc.at, got, want)
			}
		})
	}
	var off *notify.QuietHours
	if off.In(t0) || off.Holds(notify.ChannelEmail) {
		t.Fatal("no quiet hours hold something")
	}
}

// TestQuietHoursSettings: malformed windows, zones and channels are
// refused with the setting named; the default holds email and webhook, not
// the helpdesk address.
func TestQuietHoursSettings(t *testing.T) {
	for _, tc := range []struct {
		window, tz, channels, err string
	}{
		{"", "", "", ""},
		{"22:00-07:00", "", "", ""},
		{"22:00-07:00", "Asia/Seoul", "email", ""},
		{"22:00-07:00", "Asia/Seoul", "email,webhook,helpdesk", ""},
		{"22:00", "", "", "HH:MM-HH:MM"},
		{"22:00-22:00", "", "", "different times"},
		{"00:00-24:00", "", "", "different times"},
		{"25:00-07:00", "", "", "time of day"},
		{"22:0-07:00", "", "", "time of day"},
		{"22:00-07:00", "Mars/Olympus", "", "notify-timezone"},
		{"22:00-07:00", "Local", "", "notify-timezone"},
		{"22:00-07:00", "", "sms", "notify-quiet-channels"},
		{"22:00-07:00", "", ",", "notify-quiet-channels"},
	} {
		q, err := config.ParseQuietHours(tc.window, tc.tz, tc.channels)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q %q %q: %v, want %q", tc.window, tc.tz, tc.channels, err, tc.err)
		}
		if err == nil && tc.window == "" && q != nil {
			t.Errorf("empty window: %+v, want off", q)
		}
	}
	q := quiet(t, "22:00-07:00", "", "")
	if !q.Holds(notify.ChannelEmail) || !q.Holds(notify.ChannelWebhook) || q.Holds(notify.ChannelHelpdesk) {
		t.Fatalf("default channels %v", q.Channels)
	}
}

// TestQuietHoursHoldUntilTheWindowEnds: a reminder due at 23:30 in Seoul
// with quiet hours 22:00-07:00 is not sent to the owner then, nor dropped:
// it waits in the outbox and arrives once at 07:00. The helpdesk copy is
// not held. A retry that falls into the window waits too; a certificate
// revoked during the night gets nothing in the morning.
func TestQuietHoursHoldUntilTheWindowEnds(t *testing.T) {
	ctx := context.Background()
	seoul, _ := time.LoadLocation("Asia/Seoul")
	st := openSQLite(t)
	srv := smtptest.Start(t)
	night := time.Date(2026, 12, 1, 23, 30, 0, 0, seoul)
	morning := time.Date(2026, 12, 2, 7, 0, 0, 0, seoul)
	clk := &clock{t: night}
	c := insert(t, st, "20:01", "jun", night.Add(-84*24*time.Hour), 90*24*time.Hour) // six days left
	gone := insert(t, st, "20:02", "kim", night.Add(-84*24*time.Hour), 90*24*time.Hour)
	r := newRunner(t, st, clk, notify.Options{Email: smtpSender(t, srv), HelpdeskEmail: "helpdesk@example.com",
		Quiet: quiet(t, "22:00-07:00", "Asia/Seoul", "")})

	res := runOnce(t, r)
	if res.Enqueued != 4 || res.Held != 2 || res.Sent != 2 {
		t.Fatalf("night pass: %v; want 4 recorded, the owners' 2 held, the helpdesk's 2 sent", res)
	}
	for _, m := range srv.Mails() {
		if m.To[0] != "helpdesk@example.com" {
			t.Fatalf("a mail to %v in quiet hours", m.To)
		}
	}
	list, err := st.ListNotifications(ctx, "jun", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range list {
		if n.Channel == notify.ChannelEmail && (n.State != store.NotifyPending || !n.NextAttempt.Equal(morning) || n.Attempts != 0) {
			t.Fatalf("held row %+v; want pending until %v, no attempt counted", n, morning)
		}
	}
	// kim revokes hers in the night.
	if err := st.MarkRevoked(ctx, gone.Serial, store.Revocation{At: night.Add(time.Hour), Reason: "superseded", By: "kim"}); err != nil {
		t.Fatal(err)
	}
	clk.Set(morning.Add(-time.Minute))
	if res := runOnce(t, r); res.Sent != 0 || res.Held != 0 {
		t.Fatalf("06:59: %v; want nothing sent, nothing to move", res)
	}
	clk.Set(morning)
	res = runOnce(t, r)
	if res.Sent != 1 || res.Cancelled != 1 {
		t.Fatalf("07:00: %v; want jun's reminder sent and kim's cancelled", res)
	}
	clk.Set(morning.Add(time.Hour))
	runOnce(t, r)
	var owners []smtptest.Mail
	for _, m := range srv.Mails() {
		if m.To[0] != "helpdesk@example.com" {
			owners = append(owners, m)
		}
	}
	if len(owners) != 1 || owners[0].To[0] != "jun@example.com" || !strings.Contains(owners[0].Body(), c.Serial) {
		t.Fatalf("owners' mails: %+v; want jun's, once", owners)
	}

	// A retry due in the window waits for its end too.
	srv.Stop()
	late := insert(t, st, "20:03", "lee", morning.Add(-84*24*time.Hour), 90*24*time.Hour)
	evening := time.Date(2026, 12, 2, 21, 59, 0, 0, seoul)
	clk.Set(evening)
	if res := runOnce(t, r); res.Retried != 2 {
		t.Fatalf("server down at 21:59: %v; want lee's two rows retrying", res)
	}
	srv.Restart()
	clk.Set(evening.Add(2 * time.Minute)) // 22:01: the retry is due, but quiet
	res = runOnce(t, r)
	if res.Held != 1 || res.Sent != 1 {
		t.Fatalf("22:01: %v; want lee's mail held and the helpdesk copy sent", res)
	}
	clk.Set(time.Date(2026, 12, 3, 7, 0, 0, 0, seoul))
	if res := runOnce(t, r); res.Sent != 1 {
		t.Fatalf("next morning: %v; want lee's reminder", res)
	}
	list, _ = st.ListNotifications(ctx, late.Username, 10)
	for _, n := range list {
		if n.Channel == notify.ChannelEmail && (n.State != store.NotifySent || n.Attempts != 2) {
			t.Fatalf("lee's row %+v; want sent on the second real attempt", n)
		}
	}
	verifyChain(t, st)
}

// addressBook is a fixed directory; the real one reads Vault entity
// metadata (internal/app, TestOwnerAddressFromVaultMetadata).
type addressBook map[string]string

func (a addressBook) Address(_ context.Context, user string) (string, error) {
	if a[user] == "!down" {
		return "", errors.New("vault unavailable")
	}
	return a[user], nil
}

// TestOwnerAddressFromTheAddressBook: a recorded address is used; none
// falls back to <user>@<domain>; one that is not a plain address never
// reaches a header; a directory that cannot be read retries, never guesses.
func TestOwnerAddressFromTheAddressBook(t *testing.T) {
	st := openSQLite(t)
	srv := smtptest.Start(t)
	clk := &clock{t: t0}
	book := addressBook{"mina": "mina.park@corp.example.org", "odd": "x@example.org\r\nBcc: eve@evil.example", "down": "!down"}
	for i, u := range []string{"mina", "nobody", "odd", "down"} {
		insert(t, st, "30:0"+string(rune('1'+i)), u, t0, 90*24*time.Hour)
	}
	r := newRunner(t, st, clk, notify.Options{Email: smtpSender(t, srv), Addresses: book})
	clk.Set(t0.Add(84 * 24 * time.Hour))
	res := runOnce(t, r)
	if res.Sent != 3 || res.Retried != 1 {
		t.Fatalf("%v; want 3 sent and down's retrying", res)
	}
	got := map[string]bool{}
	for _, m := range srv.Mails() {
		got[m.To[0]] = true
		if strings.Contains(m.Header("To"), "evil") || strings.Contains(m.Header("Bcc"), "evil") {
			t.Fatalf("a header carries the bad metadata: %+v", m)
		}
	}
	for _, want := range []string{"mina.park@corp.example.org", "nobody@example.com", "odd@example.com"} {
		if !got[want] {
			t.Errorf("no mail to %s (got %v)", want, got)
		}
	}
	list, _ := st.ListNotifications(context.Background(), "down", 1)
	if len(list) != 1 || list[0].State != store.NotifyPending || !strings.Contains(list[0].LastError, "vault unavailable") {
		t.Fatalf("down's row: %+v; want pending with the lookup's error", list)
	}
}

// TestOffboardHeldNotice: a notice recorded with an offboard.held event goes
// to the helpdesk address once, says why and what to run, and its trail
// event names the held event, not a serial.
func TestOffboardHeldNotice(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	srv := smtptest.Start(t)
	clk := &clock{t: t0}
	held := &audit.Event{Time: t0, Actor: "certportal", Action: audit.ActionOffboardHeld, Outcome: audit.OutcomeDenied,
		Details: `{"why":"user list of mount userpass is empty while 40 users hold active certificates","listed_users":"0","active_users":"40","would_revoke_users":"40","users":"alice bob","max_share":"10%","max_count":"50"}`}
	if err := st.RecordNotice(ctx, held, store.ThresholdOffboardHeld, []string{notify.ChannelHelpdesk}, t0); err != nil {
		t.Fatal(err)
	}
	r := newRunner(t, st, clk, notify.Options{Email: smtpSender(t, srv), HelpdeskEmail: "helpdesk@example.com",
		Quiet: quiet(t, "00:00-23:59", "UTC", "")}) // quiet all day: the helpdesk is not held
	if res := runOnce(t, r); res.Sent != 1 {
		t.Fatalf("%v; want the notice sent", res)
	}
	runOnce(t, r)
	mails := srv.Mails()
	if len(mails) != 1 || mails[0].To[0] != "helpdesk@example.com" || mails[0].Header("Subject") != "Offboarding held: nothing revoked until an operator confirms" {
		t.Fatalf("mails: %+v", mails)
	}
	body := mails[0].Body()
	for _, want := range []string{"user list of mount userpass is empty", "Users with active certificates: 40", "alice bob",
		"certportal offboard --once --dry-run", "--confirm", "Audit event #1."} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	events := verifyChain(t, st)
	if len(events) != 1 || events[0].Serial != "" || !strings.Contains(events[0].Details, `"event":"1"`) ||
		!strings.Contains(events[0].Details, `"threshold":"offboard-held"`) || events[0].Outcome != audit.OutcomeSuccess {
		t.Fatalf("trail: %+v", events)
	}
}
