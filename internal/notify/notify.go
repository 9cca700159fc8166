// Package notify tells certificate owners, and the helpdesk, before their
// certificates expire. It is the domain side only: which reminders are due,
// the outbox they go through, retries, the audit trail. How a message
// travels is a Sender (smtp.go, webhook.go).
//
// # Delivery
//
// Each pass (a tick of the scheduler in serve, or `certportal notify
// --once`):
//
//  1. records as pending, in SQL, one row per certificate, threshold and
//     channel that is due (store.EnqueueReminders; the unique key makes
//     this once per certificate and threshold however often it runs, and
//     safe on several replicas at once). Only the most urgent due threshold
//     is recorded: each threshold owns the band of time left between it and
//     the next more urgent one, so after missed runs a certificate with two
//     days left gets the 72h reminder, not the 720h and 168h ones too, and a
//     pending less urgent row is marked skipped;
//  2. claims due rows one at a time (state sending, with a lease), checks the
//     certificate is still unrevoked and not renewed, sends, and records the
//     outcome with its audit event in one transaction;
//  3. a failed send goes back to pending with exponential backoff, until
//     MaxAttempts or a permanent error (SMTP 5xx, HTTP 4xx) makes it failed.
//
// Quiet hours (optional) hold the messages of some channels inside a daily
// window: their due rows are moved to the window's end, not dropped.
//
// Besides certificates' reminders the outbox carries notices about audit
// events (a held offboarding sweep, to the helpdesk): rows whose serial is
// store.NoticeSerial of the event, written with it by store.RecordNotice.
//
// A runner that dies mid-send leaves its row sending. When the lease runs
// out the row becomes unknown and is never sent again: at most once. Its
// message may or may not have been accepted (the process died between
// handing it over and recording that), and a duplicate reminder was judged
// worse than a lost one, since the next threshold still comes.
package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/store"
)

// Channels.
const (
	ChannelEmail    = "email"    // to the owner: a Vault entity metadata field when set, else <user>@<email domain>
	ChannelWebhook  = "webhook"  // to the configured webhook (generic JSON, Slack or Teams)
	ChannelHelpdesk = "helpdesk" // a copy of each reminder, and the escalation, to the helpdesk address
)

// ExpiredLookback bounds the expired notice: certificates that expired
// longer ago than this (before reminders were turned on, say) get none.
const ExpiredLookback = 7 * 24 * time.Hour

// Message is one notification, rendered.
type Message struct {
	ID          string // stable per notification row, e.g. for Message-ID
	To          string // email address (email and helpdesk channels)
	Subject     string
	Text        string
	Lang        i18n.Lang
	Kind        string // "reminder" or "expired"
	Username    string
	CertSubject string // the certificate's subject (CN)
	Label       string // the user's name for it; may be empty
	Serial      string
	Threshold   time.Duration
	NotAfter    time.Time
	RenewURL    string
}

// Sender delivers a message on one channel. An error wrapping ErrPermanent is
// not retried.
type Sender interface {
	Send(ctx context.Context, m *Message) error
}

// ErrPermanent marks an error no retry can cure (a refused recipient, a 4xx).
var ErrPermanent = errors.New("permanent failure")

// AddressBook finds an owner's own address (e.g. in their Vault entity's
// metadata). "" and no error: none recorded, so <user>@<email domain>. An
// error (Vault unreachable) retries the message later rather than guess.
type AddressBook interface {
	Address(ctx context.Context, username string) (string, error)
}

// Options configure a Runner.
type Options struct {
	Thresholds    []time.Duration // time left before expiry, e.g. 720h, 168h, 72h
	Expired       bool            // also tell the owner once a certificate has expired
	EmailDomain   string          // owners are <user>@<EmailDomain> unless Addresses knows better
	Addresses     AddressBook     // nil: every owner is <user>@<EmailDomain>
	HelpdeskEmail string          // copies and escalations; empty: none
	PublicURL     string          // the portal's base URL for renew links
	Email         Sender          // nil: no email (owner nor helpdesk)
	Webhook       Sender          // nil: no webhook
	Quiet         *QuietHours     // nil: send whenever due

	Now         func() time.Time // the clock; tests move it
	Lease       time.Duration    // how long a claim lasts; longer than any send takes
	SendTimeout time.Duration    // per send; must be well under Lease
	MaxAttempts int
	FirstRetry  time.Duration // backoff doubles from here
	MaxRetry    time.Duration

	Metrics *metrics.Metrics
	Log     *slog.Logger
}

// Runner runs passes over one store.
type Runner struct {
	st   store.Store
	opts Options
}

// New checks o and fills in defaults.
func New(st store.Store, o Options) (*Runner, error) {
	if o.Email == nil && o.Webhook == nil {
		return nil, errors.New("notify: no channel configured (set CERTPORTAL_SMTP_URL or CERTPORTAL_NOTIFY_WEBHOOK)")
	}
	if len(o.Thresholds) == 0 {
		return nil, errors.New("notify: no thresholds")
	}
	ths := append([]time.Duration(nil), o.Thresholds...)
	sort.Slice(ths, func(i, j int) bool { return ths[i] < ths[j] })
	for i, t := range ths {
		if t <= 0 || (i > 0 && t == ths[i-1]) {
			return nil, fmt.Errorf("notify: thresholds must be positive and distinct, got %v", o.Thresholds)
		}
	}
	o.Thresholds = ths
	if o.HelpdeskEmail != "" && o.Email == nil {
		return nil, errors.New("notify: a helpdesk address needs CERTPORTAL_SMTP_URL")
	}
	if o.Email != nil && o.EmailDomain == "" {
		return nil, errors.New("notify: email needs the email domain")
	}
	if u, err := url.Parse(o.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("notify: public URL %q: want https://host[/path] (CERTPORTAL_PUBLIC_URL), renew links are built from it", o.PublicURL)
	}
	o.PublicURL = strings.TrimRight(o.PublicURL, "/")
	if o.Now == nil {
		o.Now = time.Now
	}
	if wh, ok := o.Webhook.(*Webhook); ok && wh.Now == nil {
		// The signature's timestamp is the runner's time, as every other
		// time of a pass is (a copy: the caller's Webhook stays as given).
		c := *wh
		c.Now = o.Now
		o.Webhook = &c
	}
	if o.Lease <= 0 {
		o.Lease = 10 * time.Minute
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = time.Minute
	}
	if o.SendTimeout > o.Lease/2 {
		o.SendTimeout = o.Lease / 2
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 12
	}
	if o.FirstRetry <= 0 {
		o.FirstRetry = time.Minute
	}
	if o.MaxRetry <= 0 {
		o.MaxRetry = time.Hour
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Runner{st: st, opts: o}, nil
}

// Result counts what one pass did.
type Result struct {
	Enqueued, Skipped, Sent, Retried, Failed, Cancelled, Unknown int
	Held                                                         int // moved to the end of quiet hours
}

func (r Result) String() string {
	return fmt.Sprintf("enqueued %d, skipped %d, sent %d, retrying %d, failed %d, cancelled %d, lost to a crash %d, held for quiet hours %d",
		r.Enqueued, r.Skipped, r.Sent, r.Retried, r.Failed, r.Cancelled, r.Unknown, r.Held)
}

// Run runs a pass every interval until ctx ends.
func (r *Runner) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if res, err := r.RunOnce(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.opts.Log.Error("reminder pass failed", "err", err)
		} else if res != (Result{}) {
			r.opts.Log.Info("reminder pass", "result", res.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Runner) channels(helpdesk bool, owner bool) []string {
	var ch []string
	if owner && r.opts.Email != nil {
		ch = append(ch, ChannelEmail)
	}
	if owner && r.opts.Webhook != nil {
		ch = append(ch, ChannelWebhook)
	}
	if helpdesk && r.opts.HelpdeskEmail != "" {
		ch = append(ch, ChannelHelpdesk)
	}
	return ch
}

// clockAllowance is how far the portal's clock may be off Vault's without
// changing which reminder is due (portal.ClockAllowance).
const clockAllowance = 5 * time.Minute

// RunOnce makes one pass: lost claims, due reminders, sending.
func (r *Runner) RunOnce(ctx context.Context) (Result, error) {
	var res Result
	now := r.opts.Now()
	if err := r.expireLeases(ctx, now, &res); err != nil {
		return res, err
	}
	if err := r.enqueue(ctx, now, &res); err != nil {
		return res, err
	}
	if q := r.opts.Quiet; q.In(now) {
		n, err := r.st.DeferNotifications(ctx, q.Channels, q.Until(now))
		if err != nil {
			return res, err
		}
		res.Held += n
	}
	lease := newLease()
	for ctx.Err() == nil {
		now := r.opts.Now()
		n, err := r.st.ClaimNotification(ctx, now, now.Add(r.opts.Lease), lease)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return res, err
		}
		if err := r.deliver(ctx, n, &res); err != nil {
			return res, err
		}
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	r.opts.Metrics.NotifyRun(r.opts.Now())
	return res, nil
}

// Enqueue records the reminders due at the runner's now (and marks
// superseded ones skipped) without sending anything: the scan alone, as
// the benchmark measures it.
func (r *Runner) Enqueue(ctx context.Context) (Result, error) {
	var res Result
	err := r.enqueue(ctx, r.opts.Now(), &res)
	return res, err
}

// enqueue records every due reminder as pending, in SQL, band by band.
func (r *Runner) enqueue(ctx context.Context, now time.Time, res *Result) error {
	lower := time.Duration(0)
	for _, th := range r.opts.Thresholds {
		n, err := r.st.EnqueueReminders(ctx, store.Band{Threshold: th, From: now.Add(lower), To: now.Add(th), At: now,
			// not_after is Vault's clock and issued_at the portal's: a
			// portal a minute behind Vault sees a new 30-day certificate
			// as valid for 720h and a minute, and would send its 720h
			// reminder a minute after issuance without the allowance.
			Channels: r.channels(true, true), MinValid: th + clockAllowance}, now)
		if err != nil {
			return err
		}
		res.Enqueued += n
		lower = th
	}
	// The escalation goes to the helpdesk whether or not owners get the
	// expired notice.
	if ch := r.channels(true, r.opts.Expired); len(ch) > 0 {
		n, err := r.st.EnqueueReminders(ctx, store.Band{Threshold: store.ThresholdExpired, From: now.Add(-ExpiredLookback), To: now,
			At: now, Channels: ch}, now)
		if err != nil {
			return err
		}
		res.Enqueued += n
	}
	n, err := r.st.SkipSuperseded(ctx)
	if err != nil {
		return err
	}
	res.Skipped = n
	return nil
}

func newLease() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// expireLeases turns claims whose runner died into unknown, never resent.
func (r *Runner) expireLeases(ctx context.Context, now time.Time, res *Result) error {
	for {
		list, err := r.st.ExpiredLeases(ctx, now, 100)
		if err != nil {
			return err
		}
		for _, n := range list {
			n.State, n.LastError = store.NotifyUnknown, "the runner stopped while sending; not sent again, so it cannot arrive twice"
			e := r.event(n, audit.OutcomeFailure, n.LastError)
			if err := r.st.FinishNotification(ctx, n, e); err != nil && !errors.Is(err, store.ErrConflict) {
				return err
			}
			res.Unknown++
			r.opts.Metrics.Notification(n.Channel, "unknown")
			r.opts.Log.Warn("reminder lost to a crash mid-send; not resent", "serial", n.Serial, "channel", n.Channel, "threshold", n.Threshold.String())
		}
		if len(list) < 100 {
			return nil
		}
	}
}

// deliver sends one claimed row and records what happened.
func (r *Runner) deliver(ctx context.Context, n *store.Notification, res *Result) error {
	now := r.opts.Now()
	if q := r.opts.Quiet; q.Holds(n.Channel) && q.In(now) {
		// Recorded (by another replica's pass, say) after this pass moved
		// the held rows: back untried, to the window's end.
		n.State, n.NextAttempt, n.Attempts = store.NotifyPending, q.Until(now), n.Attempts-1
		res.Held++
		return r.finish(ctx, n, nil)
	}
	if id, ok := store.NoticeEvent(n.Serial); ok {
		return r.deliverNotice(ctx, n, id, res)
	}
	c, err := r.st.GetCertificate(ctx, n.Serial)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return r.retry(ctx, n, err, res)
	}
	why := ""
	switch {
	case c == nil:
		why = "certificate not in the inventory"
	case c.Revoked():
		why = "revoked"
	case n.Threshold > 0 && !now.Before(c.NotAfter):
		why = "expired before the reminder went out"
	default:
		renewed, err := r.renewed(ctx, c, now)
		if err != nil {
			return r.retry(ctx, n, err, res)
		}
		if renewed {
			why = "renewed"
		}
	}
	if why != "" {
		n.State, n.LastError = store.NotifyCancelled, why
		res.Cancelled++
		r.opts.Metrics.Notification(n.Channel, "cancelled")
		return r.finish(ctx, n, nil)
	}
	m, err := r.render(ctx, n, c)
	if err != nil {
		return r.retry(ctx, n, err, res)
	}
	return r.send(ctx, n, m, res)
}

// send hands m to its channel and records the outcome.
func (r *Runner) send(ctx context.Context, n *store.Notification, m *Message, res *Result) error {
	sender := r.opts.Email
	if n.Channel == ChannelWebhook {
		sender = r.opts.Webhook
	}
	if n.Channel == ChannelHelpdesk && r.opts.HelpdeskEmail == "" {
		sender = nil
	}
	if sender == nil {
		// The channel was turned off after the row was recorded.
		n.State, n.LastError = store.NotifyCancelled, "channel no longer configured"
		res.Cancelled++
		return r.finish(ctx, n, nil)
	}
	sctx, cancel := context.WithTimeout(ctx, r.opts.SendTimeout)
	err := sender.Send(sctx, m)
	cancel()
	if err != nil {
		return r.retry(ctx, n, err, res)
	}
	n.State, n.SentAt, n.LastError = store.NotifySent, r.opts.Now(), ""
	res.Sent++
	r.opts.Metrics.Notification(n.Channel, "sent")
	r.opts.Log.Info("reminder sent", "serial", n.Serial, "user", n.Username, "channel", n.Channel, "threshold", n.Threshold.String())
	return r.finish(ctx, n, r.event(n, audit.OutcomeSuccess, ""))
}

// renewed: a newer unrevoked certificate of the same user is valid now.
func (r *Runner) renewed(ctx context.Context, c *store.Certificate, now time.Time) (bool, error) {
	list, err := r.st.ListCertificates(ctx, store.CertificateFilter{Username: c.Username, ActiveAt: now, Limit: 100})
	if err != nil {
		return false, err
	}
	for _, o := range list {
		if o.Serial != c.Serial && o.IssuedAt.After(c.IssuedAt) {
			return true, nil
		}
	}
	return false, nil
}

func (r *Runner) retry(ctx context.Context, n *store.Notification, cause error, res *Result) error {
	msg := audit.Cut(cause.Error(), 300)
	n.LastError = msg
	if errors.Is(cause, ErrPermanent) || n.Attempts >= r.opts.MaxAttempts {
		n.State = store.NotifyFailed
		res.Failed++
		r.opts.Metrics.Notification(n.Channel, "failed")
		r.opts.Log.Error("reminder given up", "serial", n.Serial, "channel", n.Channel, "attempts", n.Attempts, "err", msg)
		return r.finish(ctx, n, r.event(n, audit.OutcomeFailure, msg))
	}
	wait := r.opts.FirstRetry << min(n.Attempts-1, 20)
	if wait > r.opts.MaxRetry || wait <= 0 {
		wait = r.opts.MaxRetry
	}
	n.State, n.NextAttempt = store.NotifyPending, r.opts.Now().Add(wait)
	res.Retried++
	r.opts.Metrics.Notification(n.Channel, "retry")
	r.opts.Log.Warn("reminder not sent; retrying", "serial", n.Serial, "channel", n.Channel, "attempts", n.Attempts, "next_in", wait.String(), "err", msg)
	return r.finish(ctx, n, nil)
}

func (r *Runner) finish(ctx context.Context, n *store.Notification, e *audit.Event) error {
	// Recorded even if the pass is being stopped: the send has happened.
	err := r.st.FinishNotification(context.WithoutCancel(ctx), n, e)
	if errors.Is(err, store.ErrConflict) {
		// Our lease ran out and another pass marked the row unknown.
		r.opts.Log.Warn("reminder outcome not recorded: the claim had expired", "serial", n.Serial, "channel", n.Channel, "state", n.State)
		return nil
	}
	if err != nil && e != nil {
		r.opts.Metrics.AuditFailure()
	}
	return err
}

// event is the audit record of a send, a final failure or a lost claim.
// Its details hold no address and no message text.
func (r *Runner) event(n *store.Notification, outcome, errText string) *audit.Event {
	d := map[string]string{"channel": n.Channel, "threshold": thresholdName(n.Threshold), "attempts": fmt.Sprint(n.Attempts), "state": n.State}
	if errText != "" {
		d["error"] = errText
	}
	serial := n.Serial
	if id, ok := store.NoticeEvent(n.Serial); ok {
		// A notice names the event it tells of; the serial column is for
		// certificates.
		d["event"], serial = fmt.Sprint(id), ""
	}
	// An SMTP server's or webhook's error text is chosen by that server:
	// cleaned value by value before it is encoded (audit.EncodeDetails).
	clean := func(v string) string { return audit.Clean(v, audit.MaxField) }
	return &audit.Event{Time: r.opts.Now().UTC(), Actor: "certportal", Subject: clean(n.Username), Action: audit.ActionNotify,
		Outcome: outcome, Serial: clean(serial), Details: audit.EncodeDetails(d, audit.MaxField)}
}

func thresholdName(t time.Duration) string {
	switch t {
	case store.ThresholdExpired:
		return "expired"
	case store.ThresholdOffboardHeld:
		return "offboard-held"
	}
	return t.String()
}

// RenewURL is the renew page of serial; the link carries the serial only.
func (r *Runner) RenewURL(serial string) string {
	return r.opts.PublicURL + "/certificates/" + url.PathEscape(serial) + "/renew"
}

// render builds the message in the owner's last UI language (English when
// none is recorded); helpdesk copies are in English.
func (r *Runner) render(ctx context.Context, n *store.Notification, c *store.Certificate) (*Message, error) {
	lang := i18n.English
	if n.Channel != ChannelHelpdesk {
		l, err := r.st.UserLanguage(ctx, n.Username)
		if err != nil {
			return nil, err
		}
		if p, ok := i18n.Parse(l); ok {
			lang = p
		}
	}
	now := r.opts.Now()
	m := &Message{ID: fmt.Sprintf("%d.%s", n.ID, strings.ReplaceAll(n.Serial, ":", "")), Lang: lang, Username: n.Username,
		CertSubject: c.Subject, Serial: c.Serial, Threshold: n.Threshold, NotAfter: c.NotAfter, RenewURL: r.RenewURL(c.Serial), Kind: "reminder"}
	if n.Threshold == store.ThresholdExpired {
		m.Kind = "expired"
	}
	left := Duration(lang, c.NotAfter.Sub(now))
	expiry := c.NotAfter.UTC().Format("2006-01-02 15:04 MST")
	// The user's own name for it first, when they gave one: "work laptop"
	// says more than a serial.
	name := c.Subject
	if c.Label != "" {
		name = "“" + c.Label + "” (" + c.Subject + ")"
	}
	m.Label = c.Label
	args := []any{n.Username, name, c.Serial, expiry, left, m.RenewURL}
	switch n.Channel {
	case ChannelHelpdesk:
		m.To = r.opts.HelpdeskEmail
		if m.Kind == "expired" {
			m.Subject = i18n.T(lang, "notify.helpdesk.subject.expired", n.Username)
			m.Text = i18n.T(lang, "notify.helpdesk.body_expired", args...)
		} else {
			m.Subject = i18n.T(lang, "notify.helpdesk.subject.reminder", n.Username, left)
			m.Text = i18n.T(lang, "notify.helpdesk.body", args...)
		}
	default:
		to, err := r.ownerAddress(ctx, n.Username)
		if err != nil {
			return nil, err
		}
		m.To = to
		if m.Kind == "expired" {
			m.Subject = i18n.T(lang, "notify.subject.expired")
			m.Text = i18n.T(lang, "notify.body.expired", args...)
		} else {
			m.Subject = i18n.T(lang, "notify.subject.reminder", left)
			m.Text = i18n.T(lang, "notify.body.reminder", args...)
		}
	}
	return m, nil
}

// ownerAddress is the owner's own address when the address book has a
// usable one, else <user>@<email domain>.
func (r *Runner) ownerAddress(ctx context.Context, username string) (string, error) {
	fallback := username + "@" + r.opts.EmailDomain
	if r.opts.Addresses == nil {
		return fallback, nil
	}
	a, err := r.opts.Addresses.Address(ctx, username)
	if err != nil {
		return "", fmt.Errorf("owner's address: %w", err)
	}
	if a == "" {
		return fallback, nil
	}
	if _, err := mailAddress(a); err != nil || !printableASCII(a) {
		// Not a plain address (a typo, a display name, a header break):
		// never put it in a header; the default still reaches them.
		r.opts.Log.Warn("owner's address from Vault is not a plain address; using the default", "user", username)
		return fallback, nil
	}
	return a, nil
}

// Duration says how long d is in days (or hours, or minutes, when less
// than a day), rounded to the nearest, in lang.
func Duration(lang i18n.Lang, d time.Duration) string {
	switch {
	case d <= 0:
		return i18n.T(lang, "notify.expired_short")
	case d >= 36*time.Hour:
		return i18n.T(lang, "ttl.days", int((d+12*time.Hour)/(24*time.Hour)))
	case d >= 24*time.Hour:
		return i18n.T(lang, "ttl.day")
	case d >= time.Hour:
		return i18n.T(lang, "ttl.hours", int((d+30*time.Minute)/time.Hour))
	default:
		return i18n.T(lang, "notify.minutes", max(1, int(d/time.Minute)))
	}
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// deliverNotice sends the notice about audit event id: a held offboarding
// sweep, told to the helpdesk address with what the sweep saw and what the
// operator can do. The event is read back from the trail, so the message
// says exactly what was recorded.
func (r *Runner) deliverNotice(ctx context.Context, n *store.Notification, id int64, res *Result) error {
	evs, err := r.st.QueryAudit(ctx, store.AuditFilter{Action: audit.ActionOffboardHeld, Outcome: audit.OutcomeDenied, BeforeID: id + 1, Limit: 1})
	if err != nil {
		return r.retry(ctx, n, err, res)
	}
	if n.Threshold != store.ThresholdOffboardHeld || len(evs) != 1 || evs[0].ID != id {
		n.State, n.LastError = store.NotifyCancelled, "the event it tells of is not an offboarding hold"
		res.Cancelled++
		r.opts.Metrics.Notification(n.Channel, "cancelled")
		return r.finish(ctx, n, nil)
	}
	e := evs[0]
	d := map[string]string{}
	_ = json.Unmarshal([]byte(e.Details), &d)
	lang := i18n.English
	clean := func(v string) string { return audit.CleanDisplay(v) }
	m := &Message{ID: fmt.Sprintf("%d.offboard-held.%d", n.ID, id), To: r.opts.HelpdeskEmail, Lang: lang, Kind: "offboard-held",
		Threshold: n.Threshold}
	m.Subject = i18n.T(lang, "notify.offboard_held.subject")
	m.Text = i18n.T(lang, "notify.offboard_held.body", e.Time.UTC().Format("2006-01-02 15:04 MST"), clean(d["why"]),
		clean(d["listed_users"]), clean(d["active_users"]), clean(d["would_revoke_users"]), clean(d["users"]),
		clean(d["max_share"]), clean(d["max_count"]), id)
	return r.send(ctx, n, m, res)
}
