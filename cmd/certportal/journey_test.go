package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/testenv"
)

// User-Agents of the platforms the employee walk emulates.
const (
	uaWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	uaMac     = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15"
	uaAndroid = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"
)

const (
	journeyServiceURL = "https://app.example.test/secure/whoami"
	journeyAccount    = "your ACME account"
)

// tab is one emulated browser: a User-Agent, a width, JavaScript on or off,
// and the downloads it completed.
type tab struct {
	t      *testing.T
	ctx    context.Context
	dlDir  string
	done   chan download
	names  chan string
	width  int
	prefix string // screenshot file prefix
}

type download struct{ guid string }

func newTab(t *testing.T, ua string, width int, js bool, prefix string) *tab {
	t.Helper()
	tb := &tab{t: t, ctx: newChromeFor(t, 5*time.Minute), dlDir: t.TempDir(), done: make(chan download, 4), names: make(chan string, 4), width: width, prefix: prefix}
	names := map[string]string{}
	listen := func(ev any) {
		switch e := ev.(type) {
		case *browser.EventDownloadWillBegin:
			names[e.GUID] = e.SuggestedFilename
			select {
			case tb.names <- e.SuggestedFilename:
			default:
			}
		case *browser.EventDownloadProgress:
			if e.State == browser.DownloadProgressStateCompleted {
				select {
				case tb.done <- download{guid: e.GUID}:
				default:
				}
			}
		}
	}
	chromedp.ListenTarget(tb.ctx, listen)
	chromedp.ListenBrowser(tb.ctx, listen)
	actions := []chromedp.Action{
		browser.SetDownloadBehavior(browser.SetDownloadBehaviorBehaviorAllowAndName).WithDownloadPath(tb.dlDir).WithEventsEnabled(true),
		emulation.SetUserAgentOverride(ua),
		chromedp.EmulateViewport(int64(width), 900),
	}
	if !js {
		actions = append(actions, emulation.SetScriptExecutionDisabled(true))
	}
	tb.run(actions...)
	return tb
}

// newChromeFor is newChrome with room for a whole walk on a busy machine.
func newChromeFor(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	// Not t.TempDir: chromium's helpers may still write to the profile for a
	// moment after the browser exits, which would fail the test's cleanup.
	profile, err := os.MkdirTemp("", "certportal-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx) // closes the browser and waits for it
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		_ = os.RemoveAll(profile)
	})
	return ctx
}

func (tb *tab) run(actions ...chromedp.Action) {
	tb.t.Helper()
	if err := chromedp.Run(tb.ctx, actions...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

// fits checks that the page is no wider than the viewport at both widths
// and leaves a screenshot of each.
func (tb *tab) fits(name string) {
	tb.t.Helper()
	for _, w := range []int64{390, 1280} {
		var scroll, inner int64
		var shot []byte
		tb.run(chromedp.EmulateViewport(w, 900),
			chromedp.Evaluate(`document.documentElement.scrollWidth`, &scroll),
			chromedp.Evaluate(`window.innerWidth`, &inner),
			chromedp.FullScreenshot(&shot, 100)) // 100: PNG
		if scroll > inner {
			tb.t.Errorf("%s at %d px: page is %d px wide", name, w, scroll)
		}
		var broken []string
		if w == 1280 {
			tb.run(chromedp.Evaluate(overLinesJS, &broken))
		}
		if len(broken) > 0 {
			tb.t.Errorf("%s at %d px: broken over lines: %q", name, w, broken)
		}
		dir := screenshotDir()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.t.Fatal(err)
		}
		file := filepath.Join(dir, tb.prefix+"-"+name+"-"+strconv.FormatInt(w, 10)+".png")
		if err := os.WriteFile(file, shot, 0o644); err != nil {
			tb.t.Fatal(err)
		}
	}
	tb.run(chromedp.EmulateViewport(int64(tb.width), 900))
}

// overLinesJS lists what a table breaks over more lines than it may at a
// desktop's width: a key type such as "ec-256", a row's "Renew · Revoke"
// and a button's label ("Revoke so they enrol again") stay on one line, a
// serial takes two at most (it breaks at its colons). An inline box broken
// over lines has one client rectangle per line.
const overLinesJS = `(() => {
	const lines = e => { const r = document.createRange(); r.selectNodeContents(e);
		return new Set(Array.from(r.getClientRects()).filter(b => b.width > 0).map(b => Math.round(b.top))).size; };
	const over = (sel, most) => Array.from(document.querySelectorAll(sel))
		.filter(e => e.textContent.trim() !== '' && lines(e) > most)
		.map(e => e.textContent.trim().replace(/\s+/g, ' ') + ' (' + lines(e) + ' lines)');
	return [...over('table.certs .nowrap, table.certs td.actions:not(:has(.hd-actions)), table.certs .button', 1),
		...over('table.certs code.serial', 2)]; })()`

// waitDownload returns the completed download's bytes and suggested name.
func (tb *tab) waitDownload() ([]byte, string) {
	tb.t.Helper()
	return tb.waitDownloadWithin(tb.ctx)
}

// waitDownloadWithin is waitDownload giving up when ctx ends.
func (tb *tab) waitDownloadWithin(ctx context.Context) ([]byte, string) {
	tb.t.Helper()
	var d download
	select {
	case d = <-tb.done:
	case <-ctx.Done():
		tb.t.Fatalf("download did not complete: %v", ctx.Err())
	}
	name := ""
	select {
	case name = <-tb.names:
	case <-ctx.Done():
	}
	data, err := os.ReadFile(filepath.Join(tb.dlDir, d.guid))
	if err != nil {
		tb.t.Fatal(err)
	}
	return data, name
}

func (tb *tab) eval(js string, out any) {
	tb.t.Helper()
	tb.run(chromedp.Evaluate(js, out))
}

// login logs in, first with a wrong password: the cursor must then be in
// the password field, with the username kept.
func (tb *tab) login(base, user, password string) {
	tb.t.Helper()
	var intro, focused, kept string
	tb.run(chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.Text(`#login-intro`, &intro, chromedp.ByID))
	if !strings.Contains(intro, journeyAccount) || strings.Contains(intro, "Vault") {
		tb.t.Errorf("login intro %q: want the configured account name %q, not Vault", intro, journeyAccount)
	}
	tb.fits("login")
	tb.run(chromedp.SendKeys(`#username`, user, chromedp.ByID),
		chromedp.SendKeys(`#password`, "not-the-password", chromedp.ByID),
		chromedp.Click(`#login-submit`, chromedp.ByID),
		chromedp.WaitVisible(`#login-error`, chromedp.ByID))
	// Chromium applies autofocus at its next rendering update: poll from
	// here (chromedp.Poll waits on the page's own timers, which a page with
	// script disabled never runs).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		tb.run(chromedp.Evaluate(`document.activeElement ? document.activeElement.id : ""`, &focused))
		if focused == "password" || time.Now().After(deadline) {
			break
		}
	}
	tb.run(
		chromedp.Value(`#username`, &kept, chromedp.ByID))
	if focused != "password" || kept != user {
		tb.t.Errorf("after a wrong password: focus on %q, username %q; want the cursor in the password field and %q kept", focused, kept, user)
	}
	tb.run(chromedp.SendKeys(`#password`, password, chromedp.ByID),
		chromedp.Click(`#login-submit`, chromedp.ByID),
		chromedp.WaitVisible(`#issue-form`, chromedp.ByID))
}

// issue fills the form with label and submits it.
func (tb *tab) issue(label string) {
	tb.t.Helper()
	var cleared bool
	fill := chromedp.Tasks{
		chromedp.Evaluate(`['label', 'password', 'password_confirm'].forEach(id => document.getElementById(id).value = ''), true`, &cleared),
		chromedp.SendKeys(`#label`, label, chromedp.ByID),
		chromedp.SendKeys(`#password`, p12Password, chromedp.ByID),
		chromedp.SendKeys(`#password_confirm`, p12Password, chromedp.ByID),
	}
	// Under load chromium now and then renumbers the DOM between chromedp's
	// query and its key events ("No node with given id found"); filling the
	// fields again from scratch is safe, submitting twice would not be.
	err := chromedp.Run(tb.ctx, fill)
	if err != nil && strings.Contains(err.Error(), "No node with given id") {
		err = chromedp.Run(tb.ctx, fill)
	}
	if err != nil {
		tb.t.Fatalf("browser: fill the certificate form: %v", err)
	}
	tb.run(chromedp.Click(`#issue-submit`, chromedp.ByID))
}

func checkP12(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	_, cert, chain, err := pkcs12.DecodeChain(data, p12Password)
	if err != nil {
		t.Fatalf("downloaded file is not a valid .p12: %v", err)
	}
	if cert.Subject.CommonName != "alice@example.com" || len(chain) < 2 {
		t.Fatalf("downloaded certificate: CN %q, chain %d", cert.Subject.CommonName, len(chain))
	}
	return cert
}

// TestEmployeeJourney walks an employee through the portal in Debian's
// chromium as Windows, macOS and Android browsers would see it: the login
// names the company account and puts the cursor back in the password field,
// the encryption default follows the platform, and after the download the
// same page shows the new certificate with its label, cleared passwords,
// the platform's install steps and the configured check link. Every page
// fits 390 and 1280 px.
func TestEmployeeJourney(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	// Three walks as one user: room for their three certificates and more.
	p := startPortal(t, v, map[string]string{"CERTPORTAL_SERVICE_URL": journeyServiceURL, "CERTPORTAL_ACCOUNT_NAME": journeyAccount,
		"CERTPORTAL_MAX_ACTIVE": "5"})
	for _, tc := range []struct {
		name, ua, platform, enc string
		width                   int
	}{
		{"windows", uaWindows, "windows", "modern", 1280},
		{"macos", uaMac, "macos", "compat", 1280},
		{"android", uaAndroid, "android", "compat", 390},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTab(t, tc.ua, tc.width, true, "employee-"+tc.name)
			tb.login(p.URL, "alice", v.Password(t, "alice"))
			var enc, reason string
			tb.eval(`document.querySelector('input[name=encryption]:checked').value`, &enc)
			tb.run(chromedp.Text(`#enc-reason`, &reason, chromedp.ByID))
			if enc != tc.enc || reason == "" {
				t.Errorf("encryption preselected %q (reason %q), want %q with a reason", enc, reason, tc.enc)
			}
			if strings.Contains(strings.ToLower(reason), "older") {
				t.Errorf("encryption reason reads as only older systems: %q", reason)
			}
			tb.fits("dashboard")

			label := tc.name + " laptop"
			tb.issue(label)
			data, name := tb.waitDownload()
			cert := checkP12(t, data)
			wantName := "alice@example.com-" + tc.name + "-laptop-" + time.Now().UTC().Format("2006-01-02") + ".p12"
			if name != wantName {
				t.Errorf("saved as %q, want %q", name, wantName)
			}
			// The page changes by itself: the new certificate with its label
			// in the list, passwords cleared, this platform's steps open.
			tb.run(chromedp.WaitVisible(`#issued`, chromedp.ByID))
			var row, pw, file, check string
			var open, othersOpen bool
			serial := vaultSerial(cert)
			tb.run(chromedp.Text(`#certificates tr[data-serial="`+serial+`"]`, &row, chromedp.ByQuery),
				chromedp.Evaluate(`[...document.querySelectorAll('input[type=password]')].map(e => e.value).join('')`, &pw),
				chromedp.Text(`#issued`, &file, chromedp.ByID),
				chromedp.Evaluate(`document.querySelector('#install-`+tc.platform+`').open`, &open),
				chromedp.Evaluate(`[...document.querySelectorAll('details.platform')].filter(d => d.open).length > 1`, &othersOpen),
				chromedp.WaitVisible(`#install-`+tc.platform+` li`, chromedp.ByQuery),
				chromedp.AttributeValue(`#check-link`, "href", &check, nil, chromedp.ByID))
			if !strings.Contains(row, label) || !strings.Contains(row, serial) || !strings.Contains(row, "1 day left") && !strings.Contains(row, "days left") {
				t.Errorf("new certificate's row %q: want label %q, full serial %s and days left", row, label, serial)
			}
			if pw != "" {
				t.Error("password fields not cleared after the download")
			}
			if !strings.Contains(file, wantName) {
				t.Errorf("success notice %q does not name the saved file", file)
			}
			if !open || othersOpen {
				t.Errorf("install steps: %s open=%v, others open=%v", tc.platform, open, othersOpen)
			}
			if check != journeyServiceURL {
				t.Errorf("check link %q, want %q", check, journeyServiceURL)
			}
			var noCerts int
			tb.eval(`document.querySelectorAll('#no-certificates').length`, &noCerts)
			if noCerts != 0 {
				t.Error(`"No certificates yet." still on screen after the download`)
			}
			tb.fits("after-download")

			// Renew keeps the certificate's own encryption; revoke asks first.
			tb.run(chromedp.Navigate(p.URL+"/certificates/"+serial+"/renew"), chromedp.WaitVisible(`#issue-form`, chromedp.ByID))
			var renewEnc, renewLabel string
			tb.eval(`document.querySelector('input[name=encryption]:checked').value`, &renewEnc)
			tb.run(chromedp.Value(`#label`, &renewLabel, chromedp.ByID))
			if renewEnc != tc.enc || renewLabel != label {
				t.Errorf("renew form: encryption %q label %q, want the certificate's own %q %q", renewEnc, renewLabel, tc.enc, label)
			}
			tb.fits("renew")
			tb.run(chromedp.Navigate(p.URL+"/certificates/"+serial+"/revoke"), chromedp.WaitVisible(`#revoke-form`, chromedp.ByID))
			tb.fits("revoke")
		})
	}
}

// TestEmployeeJourneyCap: at the cap the dashboard says so before any
// password is typed, and offers renew and revoke of the existing ones.
func TestEmployeeJourneyCap(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MAX_ACTIVE": "1"})
	c := newBrowser(t, p.URL)
	c.mustLogin("alice", v.Password(t, "alice"))
	form := issueForm(p12Password, p12Password, "24h", "modern")
	form.Set("label", "only one")
	if r := c.post("/certificates", form); r.StatusCode != http.StatusOK {
		t.Fatalf("issue: %d %s", r.StatusCode, r.Body)
	}
	tb := newTab(t, uaWindows, 390, true, "employee-cap")
	tb.run(chromedp.Navigate(p.URL+"/login"), chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, "alice", chromedp.ByID),
		chromedp.SendKeys(`#password`, v.Password(t, "alice"), chromedp.ByID),
		chromedp.Click(`#login-submit`, chromedp.ByID),
		chromedp.WaitVisible(`#at-cap`, chromedp.ByID))
	var forms, renew, revoke int
	var text string
	tb.eval(`document.querySelectorAll('#issue-form, input[type=password]').length`, &forms)
	tb.eval(`document.querySelectorAll('#at-cap a[href$="/renew"]').length`, &renew)
	tb.eval(`document.querySelectorAll('#at-cap a[href$="/revoke"]').length`, &revoke)
	tb.run(chromedp.Text(`#at-cap`, &text, chromedp.ByID))
	if forms != 0 || renew != 1 || revoke != 1 || !strings.Contains(text, "only one") {
		t.Errorf("at the cap: %d password fields, %d renew and %d revoke links; text %q", forms, renew, revoke, text)
	}
	tb.fits("dashboard")
}

// fieldState is what the page shows about the password pair: the confirm
// field's ARIA state, the focus, the message its aria-describedby points
// at, and that message's colours next to the status line's (.busy) and
// the server's error box (.error).
type fieldState struct {
	Invalid, DescribedBy, Focused, Text string
	Visible, BusyShown                  bool
	Color, Background                   string
	BusyColor, BusyBackground           string
	ErrorColor, ErrorBackground         string
	FieldErrors                         int
}

const fieldStateJS = `(() => {
	const f = document.getElementById('password_confirm');
	const ids = (f.getAttribute('aria-describedby') || '').split(/\s+/).filter(Boolean);
	const msg = ids.map(id => document.getElementById(id)).find(e => e && e.classList.contains('error'));
	const busy = document.getElementById('issue-busy');
	const box = document.createElement('p'); box.className = 'error'; document.querySelector('main').appendChild(box);
	const cs = e => getComputedStyle(e);
	const out = {
		Invalid: f.getAttribute('aria-invalid') || '', DescribedBy: ids.join(' '),
		Focused: document.activeElement ? document.activeElement.id : '',
		Text: msg ? msg.textContent.trim() : '', Visible: !!msg && msg.offsetParent !== null && msg.getClientRects().length > 0,
		BusyShown: !busy.hidden,
		Color: msg ? cs(msg).color : '', Background: msg ? cs(msg).backgroundColor : '',
		BusyColor: cs(busy).color, BusyBackground: cs(busy).backgroundColor,
		ErrorColor: cs(box).color, ErrorBackground: cs(box).backgroundColor,
		FieldErrors: document.querySelectorAll('#issue-form .field-error').length,
	};
	box.remove();
	return out;
})()`

// TestEmployeeJourneyPasswordMismatch: with the page script, two file
// passwords that differ are a field error, on both key paths (made by the
// server, made on this device) and in both languages: "Password again" is
// aria-invalid and described by a visible message from the catalog in the
// look of the server's errors (not the grey status line under the
// button), with the cursor in it; editing either password takes the error
// away, and so does sending the form again with matching passwords, which
// then issues.
func TestEmployeeJourneyPasswordMismatch(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_ACCOUNT_NAME": journeyAccount, "CERTPORTAL_MAX_ACTIVE": "5"})
	tb := newTab(t, uaWindows, 1280, true, "employee-mismatch")
	tb.login(p.URL, "alice", v.Password(t, "alice"))
	for _, lang := range []i18n.Lang{i18n.English, i18n.Korean} {
		for _, origin := range []string{"server", "device"} {
			what := string(lang) + "/" + origin
			want := i18n.T(lang, "error.password_mismatch")
			mismatch := func(edit string) {
				t.Helper()
				var cleared bool
				tb.run(chromedp.Evaluate(`['password', 'password_confirm'].forEach(id => document.getElementById(id).value = ''), true`, &cleared),
					chromedp.SendKeys(`#password`, p12Password, chromedp.ByID),
					chromedp.SendKeys(`#password_confirm`, p12Password+edit, chromedp.ByID),
					chromedp.Click(`#issue-submit`, chromedp.ByID))
				tb.waitVisibleWithin(`#password_confirm[aria-invalid="true"]`, 30*time.Second, what+": no field error on the confirm field")
				var st fieldState
				tb.eval(fieldStateJS, &st)
				if st.Text != want || !st.Visible || st.Focused != "password_confirm" || st.FieldErrors != 1 {
					t.Errorf("%s: the confirm field is described by %q (text %q, visible %v, %d field errors), focus on %q; want the visible message %q and the cursor in the field",
						what, st.DescribedBy, st.Text, st.Visible, st.FieldErrors, st.Focused, want)
				}
				if st.BusyShown || st.Color == st.BusyColor || st.Background == st.BusyBackground {
					t.Errorf("%s: the message looks like the status line (colour %s on %s, status line %s on %s, shown %v)",
						what, st.Color, st.Background, st.BusyColor, st.BusyBackground, st.BusyShown)
				}
				if st.Color != st.ErrorColor || st.Background != st.ErrorBackground {
					t.Errorf("%s: the message is %s on %s, the server's errors %s on %s", what, st.Color, st.Background, st.ErrorColor, st.ErrorBackground)
				}
			}
			tb.run(chromedp.Navigate(p.URL+"/?lang="+string(lang)),
				chromedp.WaitVisible(`#key-`+origin, chromedp.ByID), // the device choice: shown by the page script
				chromedp.Click(`#key-`+origin, chromedp.ByID))
			mismatch("x")
			tb.fits("mismatch-" + string(lang) + "-" + origin)

			// Editing either field takes the error away.
			for _, field := range []string{"password", "password_confirm"} {
				if field == "password_confirm" {
					mismatch("y")
				}
				tb.run(chromedp.SendKeys(`#`+field, "z", chromedp.ByID))
				var st fieldState
				tb.eval(fieldStateJS, &st)
				if st.Invalid != "" || st.DescribedBy != "" || st.FieldErrors != 0 {
					t.Errorf("%s: after editing %s: aria-invalid %q, described by %q, %d field errors; want none", what, field, st.Invalid, st.DescribedBy, st.FieldErrors)
				}
			}

			// Sent again with matching passwords (set without an edit, as
			// a password manager may): no error while it issues, then the file.
			mismatch("x")
			var sent fieldState
			tb.eval(`(() => { const f = document.getElementById('password_confirm'); f.value = document.getElementById('password').value;
				document.getElementById('issue-form').requestSubmit(document.getElementById('issue-submit')); return `+fieldStateJS+`; })()`, &sent)
			if sent.Invalid != "" || sent.FieldErrors != 0 || !sent.BusyShown {
				t.Errorf("%s: sent again with matching passwords: aria-invalid %q, %d field errors, status line shown %v; want no error and the status line", what, sent.Invalid, sent.FieldErrors, sent.BusyShown)
			}
			ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
			data, _ := tb.waitDownloadWithin(ctx)
			cancel()
			checkP12(t, data)
			tb.run(chromedp.WaitVisible(`#issued`, chromedp.ByID))
		}
	}
}

// TestEmployeeJourneyNoScript: with JavaScript off a refused form shows
// its error; the form then answers with the page the page script shows
// after its download — the new certificate in the list, the platform's
// install steps, the earlier error gone, no language switch — with the
// file as a save link. Clicking it saves a .p12 that opens with the
// password typed and holds the listed certificate; the page came with
// no-store. A renewal answers the same way.
func TestEmployeeJourneyNoScript(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_SERVICE_URL": journeyServiceURL, "CERTPORTAL_ACCOUNT_NAME": journeyAccount})
	tb := newTab(t, uaMac, 390, false, "employee-noscript")
	tb.login(p.URL, "alice", v.Password(t, "alice"))
	tb.run(chromedp.SendKeys(`#password`, p12Password, chromedp.ByID),
		chromedp.SendKeys(`#password_confirm`, p12Password+"x", chromedp.ByID),
		chromedp.Click(`#issue-submit`, chromedp.ByID),
		chromedp.WaitVisible(`#form-error`, chromedp.ByID))
	// The server's field error: the field says so and points at the message.
	var invalid, described string
	tb.eval(`document.getElementById('password_confirm').getAttribute('aria-invalid') || ''`, &invalid)
	tb.eval(`document.getElementById('password_confirm').getAttribute('aria-describedby') || ''`, &described)
	if invalid != "true" || !strings.Contains(" "+described+" ", " form-error ") {
		t.Errorf("refused form: confirm field aria-invalid %q, aria-describedby %q; want true and the error message", invalid, described)
	}

	// The answers to the form from here on: their headers.
	answers := make(chan network.Headers, 4)
	chromedp.ListenTarget(tb.ctx, func(ev any) {
		if e, ok := ev.(*network.EventResponseReceived); ok && e.Type == network.ResourceTypeDocument && strings.HasSuffix(e.Response.URL, "/certificates") {
			select {
			case answers <- e.Response.Headers:
			default:
			}
		}
	})
	save := func(what string) (*x509.Certificate, string) {
		t.Helper()
		tb.waitVisibleWithin(`#save-link`, time.Minute, what+": no save page after the form")
		select {
		case h := <-answers:
			if cc, _ := h["Cache-Control"].(string); cc != "no-store" {
				t.Errorf("%s: the save page came with Cache-Control %q, want no-store", what, cc)
			}
		case <-tb.ctx.Done():
			t.Fatalf("%s: no response event for the form's answer", what)
		}
		var errs, langLinks int
		var link string
		tb.eval(`document.querySelectorAll('#form-error, .error').length`, &errs)
		tb.eval(`document.querySelectorAll('header .langs a').length`, &langLinks)
		tb.run(chromedp.AttributeValue(`#save-link`, "download", &link, nil, chromedp.ByID))
		if errs != 0 {
			t.Errorf("%s: an earlier error is still on the save page", what)
		}
		if langLinks != 0 {
			t.Errorf("%s: the save page offers a language switch, which would reload it without the file", what)
		}
		// The save control comes first; the text that the file must be
		// saved first comes before every control that leaves the page:
		// the one under the link before the install steps' link, the
		// other before another certificate's form, the cap's and the
		// list's renew and revoke.
		var order struct {
			First, Leave string
			Early, Late  []string
			Controls     int
		}
		tb.eval(`(() => {
			const main = document.querySelector('main');
			const link = document.getElementById('save-link'), warn = document.getElementById('save-warning'), leave = document.getElementById('save-leave');
			const after = (a, b) => !!a && !!(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING);
			const controls = [...main.querySelectorAll('a[href], button, input[type=submit], form')];
			const name = e => e.id || e.getAttribute('href') || e.textContent.trim();
			const others = controls.filter(e => e !== link);
			return {
				First: controls.length ? name(controls[0]) : '',
				Leave: leave && leave.getClientRects().length > 0 ? leave.textContent.trim() : '',
				Early: others.filter(e => !after(warn, e)).map(name),
				Late: others.filter(e => !e.closest('#issued-area') && !after(leave, e)).map(name),
				Controls: others.filter(e => !e.closest('#issued-area')).length,
			};
		})()`, &order)
		wantLeave := i18n.T(i18n.English, "save.leave_first") + " " + i18n.T(i18n.English, "save.leave_why")
		if order.First != "save-link" || order.Leave != wantLeave || len(order.Early) > 0 || len(order.Late) > 0 || order.Controls == 0 {
			t.Errorf("%s: first control %q; before leaving: %q (want %q); controls before the warnings: %q, %q (of %d)",
				what, order.First, order.Leave, wantLeave, order.Early, order.Late, order.Controls)
		}
		tb.fits(what)
		tb.run(chromedp.Click(`#save-link`, chromedp.ByID))
		data, name := tb.waitDownload()
		if name != link {
			t.Errorf("%s: saved as %q, the link says %q", what, name, link)
		}
		cert := checkP12(t, data)
		serial := vaultSerial(cert)
		var row string
		var open bool
		tb.run(chromedp.Text(`#certificates tr[data-serial="`+serial+`"]`, &row, chromedp.ByQuery),
			chromedp.Evaluate(`document.querySelector('#install-macos').open`, &open),
			chromedp.WaitVisible(`#install-macos li`, chromedp.ByQuery))
		if !open || !strings.Contains(row, "no script") {
			t.Errorf("%s: macOS steps open=%v, row of the saved certificate %q", what, open, row)
		}
		return cert, name
	}

	tb.issue("no script")
	cert, name := save("save-page")
	if !strings.Contains(name, "-no-script-") {
		t.Errorf("saved as %q", name)
	}
	serial := vaultSerial(cert)

	// Reloading the save page sends the form again: no second
	// certificate, the dashboard says which one the form issued.
	ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
	if err := chromedp.Run(ctx, chromedp.Reload(), chromedp.WaitVisible(`#notice`, chromedp.ByID)); err != nil {
		t.Fatalf("reload of the save page: %v", err)
	}
	cancel()
	<-answers
	var notice string
	var links, rows int
	tb.run(chromedp.Text(`#notice`, &notice, chromedp.ByID))
	tb.eval(`document.querySelectorAll('#save-link').length`, &links)
	tb.eval(`document.querySelectorAll('#certificates tbody tr').length`, &rows)
	if links != 0 || rows != 1 || !strings.Contains(notice, "already sent") || !strings.Contains(notice, "no script") {
		t.Errorf("reloaded save page: %d save links, %d certificates listed, notice %q; want none, one, and the notice naming it", links, rows, notice)
	}
	tb.fits("save-page-reloaded")

	tb.run(chromedp.Navigate(p.URL+"/certificates/"+serial+"/renew"), chromedp.WaitVisible(`#issue-form`, chromedp.ByID),
		chromedp.SendKeys(`#password`, p12Password, chromedp.ByID),
		chromedp.SendKeys(`#password_confirm`, p12Password, chromedp.ByID),
		chromedp.Click(`#issue-submit`, chromedp.ByID))
	renewed, _ := save("renew-save-page")
	var oldRow int
	tb.eval(`document.querySelectorAll('#certificates tr.status-revoked[data-serial="`+serial+`"]').length`, &oldRow)
	if vaultSerial(renewed) == serial || oldRow != 1 {
		t.Errorf("renewal: new serial %s (old %s), old one shown revoked: %v", vaultSerial(renewed), serial, oldRow == 1)
	}
}

// waitVisibleWithin waits up to within for sel, failing with msg.
func (tb *tab) waitVisibleWithin(sel string, within time.Duration, msg string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, within)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.WaitVisible(sel, chromedp.ByQuery)); err != nil {
		var body string
		_ = chromedp.Run(tb.ctx, chromedp.Text(`main`, &body, chromedp.ByQuery))
		tb.t.Fatalf("%s: %v\npage: %s", msg, err, body)
	}
}

// englishOnlyWords are the words of the catalog's English side that the
// Korean side never uses (product names such as Windows or Firefox appear
// in both, so they are allowed).
func englishOnlyWords() map[string]bool {
	word := regexp.MustCompile(`[A-Za-z]{3,}`)
	ko := map[string]bool{}
	for _, k := range i18n.Keys() {
		for _, w := range word.FindAllString(i18n.T(i18n.Korean, k), -1) {
			ko[w] = true
		}
	}
	out := map[string]bool{}
	for _, k := range i18n.Keys() {
		for _, w := range word.FindAllString(i18n.T(i18n.English, k), -1) {
			if !ko[w] {
				out[w] = true
			}
		}
	}
	return out
}

// TestEmployeeJourneyKorean walks the same pages with lang=ko: none shows a
// word from the catalog's English side.
func TestEmployeeJourneyKorean(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_SERVICE_URL": journeyServiceURL})
	english := englishOnlyWords()
	word := regexp.MustCompile(`[A-Za-z]{3,}`)
	tb := newTab(t, uaAndroid, 390, true, "employee-ko")
	checkKorean := func(page string) {
		t.Helper()
		var text string
		tb.run(chromedp.Text(`body`, &text, chromedp.ByQuery))
		var found []string
		for _, w := range word.FindAllString(text, -1) {
			// The user's own identity is data, not text to translate.
			if english[w] && w != "alice" && w != "example" {
				found = append(found, w)
			}
		}
		if len(found) > 0 {
			t.Errorf("Korean %s page shows English words %q", page, found)
		}
		tb.fits(page)
	}
	tb.run(chromedp.Navigate(p.URL+"/login?lang=ko"), chromedp.WaitVisible(`#username`, chromedp.ByID))
	checkKorean("login")
	tb.run(chromedp.SendKeys(`#username`, "alice", chromedp.ByID),
		chromedp.SendKeys(`#password`, v.Password(t, "alice"), chromedp.ByID),
		chromedp.Click(`#login-submit`, chromedp.ByID),
		chromedp.WaitVisible(`#issue-form`, chromedp.ByID))
	checkKorean("dashboard")
	tb.issue("업무용 휴대폰")
	_, name := tb.waitDownload()
	if !strings.Contains(name, "업무용-휴대폰") {
		t.Errorf("saved as %q, want the Korean label in the name", name)
	}
	tb.run(chromedp.WaitVisible(`#issued`, chromedp.ByID))
	checkKorean("after-download")
	var serial string
	tb.eval(`document.querySelector('#certificates tbody tr').dataset.serial`, &serial)
	tb.run(chromedp.Navigate(p.URL+"/certificates/"+serial+"/renew"), chromedp.WaitVisible(`#issue-form`, chromedp.ByID))
	checkKorean("renew")
	tb.run(chromedp.Navigate(p.URL+"/certificates/"+serial+"/revoke"), chromedp.WaitVisible(`#revoke-form`, chromedp.ByID))
	checkKorean("revoke")
}

// vaultSerial is Vault's form of a certificate's serial.
func vaultSerial(c *x509.Certificate) string {
	b := c.SerialNumber.Bytes()
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = strings.ToLower(string("0123456789abcdef"[x>>4]) + string("0123456789abcdef"[x&15]))
	}
	return strings.Join(parts, ":")
}

var _ = url.Values{}
var _ = tls.Certificate{}

// TestBrowserDeviceKeyRefusedShown: when the portal refuses the device
// path's request (here a name with a bidi override, which the form itself
// lets through), the page shows the portal's reason as an error on the
// field it names — the red box of the server's errors, announced, the
// field aria-invalid and described by it — not as the grey status line,
// and nothing is downloaded; editing the field takes it away.
func TestBrowserDeviceKeyRefusedShown(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_ACCOUNT_NAME": journeyAccount})
	tb := newTab(t, uaWindows, 1280, true, "employee-device-refused")
	tb.login(p.URL, "alice", v.Password(t, "alice"))
	for _, lang := range []i18n.Lang{i18n.English, i18n.Korean} {
		want := i18n.T(lang, "error.text_invalid")
		tb.run(chromedp.Navigate(p.URL+"/?lang="+string(lang)),
			chromedp.WaitVisible(`#key-device`, chromedp.ByID),
			chromedp.Click(`#key-device`, chromedp.ByID),
			chromedp.SendKeys(`#password`, p12Password, chromedp.ByID),
			chromedp.SendKeys(`#password_confirm`, p12Password, chromedp.ByID))
		var ok bool
		tb.eval(`(() => { document.getElementById('label').value = 'bad\u202elabel'; return true; })()`, &ok)
		tb.run(chromedp.Click(`#issue-submit`, chromedp.ByID))
		tb.waitVisibleWithin(`#label[aria-invalid="true"]`, time.Minute, string(lang)+": the refusal is not shown on the name field")
		var st struct {
			Text, Role, Color, Background, ErrorColor, ErrorBackground, Focused string
			BusyShown, ButtonDisabled                                           bool
		}
		tb.eval(`(() => {
			const f = document.getElementById('label');
			const m = (f.getAttribute('aria-describedby') || '').split(/\s+/).map(id => document.getElementById(id)).find(e => e && e.classList.contains('error'));
			const box = document.createElement('p'); box.className = 'error'; document.querySelector('main').appendChild(box);
			const out = { Text: m ? m.textContent.trim() : '', Role: m ? m.getAttribute('role') || '' : '',
				Color: m ? getComputedStyle(m).color : '', Background: m ? getComputedStyle(m).backgroundColor : '',
				ErrorColor: getComputedStyle(box).color, ErrorBackground: getComputedStyle(box).backgroundColor,
				Focused: document.activeElement ? document.activeElement.id : '',
				BusyShown: !document.getElementById('issue-busy').hidden, ButtonDisabled: document.getElementById('issue-submit').disabled };
			box.remove(); return out; })()`, &st)
		if st.Text != want || st.Role != "alert" || st.BusyShown || st.ButtonDisabled || st.Focused != "label" ||
			st.Color != st.ErrorColor || st.Background != st.ErrorBackground {
			t.Errorf("%s: refusal shown as %q (role %q, %s on %s; errors are %s on %s), focus %q, status line shown %v, button disabled %v; want %q as an alert in the error box on the name field",
				lang, st.Text, st.Role, st.Color, st.Background, st.ErrorColor, st.ErrorBackground, st.Focused, st.BusyShown, st.ButtonDisabled, want)
		}
		// Edited: the error goes; sent again: the file comes.
		tb.run(chromedp.SendKeys(`#label`, "x", chromedp.ByID))
		var left int
		tb.eval(`document.querySelectorAll('#issue-form .field-error, #issue-form [aria-invalid="true"]').length`, &left)
		if left != 0 {
			t.Errorf("%s: the refusal stays after editing the name", lang)
		}
		tb.eval(`(() => { document.getElementById('label').value = 'laptop'; return true; })()`, &ok)
		tb.run(chromedp.Click(`#issue-submit`, chromedp.ByID))
		ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
		data, _ := tb.waitDownloadWithin(ctx)
		cancel()
		if len(data) == 0 {
			t.Fatalf("%s: no file after sending again", lang)
		}
		tb.run(chromedp.WaitVisible(`#issued`, chromedp.ByID))
	}
}
