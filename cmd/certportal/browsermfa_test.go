package main

import (
	"bytes"
	"context"
	"image"
	_ "image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
	"github.com/pquerna/otp"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/testenv"
)

// totpClock hands out codes for TOTP secrets, each from a 30-second step
// not used before for that secret: Vault refuses a reused code, and its
// skew of one step lets the next step's code count as fresh. When both are
// spent it waits for the clock to reach the next step (the time a user
// waits for their app's next code).
type totpClock struct {
	mu   sync.Mutex
	last map[string]int64 // secret -> last step used
}

func (c *totpClock) next(t *testing.T, secret string) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]int64{}
	}
	for {
		// The current step first: the previous one may have ended by the
		// time the code reaches Vault.
		now := time.Now().Unix() / 30
		step := now
		if l, ok := c.last[secret]; ok && l >= step {
			step = l + 1
		}
		if step <= now+1 {
			c.last[secret] = step
			return code(t, secret, time.Unix(step*30, 0))
		}
		// Every step Vault would accept is spent: the next one comes
		// within 30 s.
		time.Sleep(time.Until(time.Unix((now+1)*30, 0)) + 100*time.Millisecond)
	}
}

// decodeQR reads the QR code in a PNG (a screenshot of the page's image)
// and returns its text.
func decodeQR(t *testing.T, png []byte) string {
	t.Helper()
	img, _, err := image.Decode(bytes.NewReader(png))
	if err != nil {
		t.Fatalf("QR screenshot: %v", err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatalf("QR bitmap: %v", err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true})
	if err != nil {
		t.Fatalf("decode the QR code the browser shows: %v", err)
	}
	return res.GetText()
}

// browserMFALogin logs user in with password and code in lang and waits for
// the page after the code; a name for screenshots of the code page (""
// takes none).
func browserMFALogin(t *testing.T, ctx context.Context, base, lang, user, password, code, shot string) {
	t.Helper()
	if err := chromedp.Run(ctx,
		chromedp.Navigate(base+"/login?lang="+lang),
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, user, chromedp.ByID),
		chromedp.SendKeys(`#password`, password, chromedp.ByID),
		chromedp.Click(`#login-submit`, chromedp.ByID),
		chromedp.WaitVisible(`#code`, chromedp.ByID),
	); err != nil {
		t.Fatalf("password step for %s: %v", user, err)
	}
	if got := currentPath(t, ctx); got != "/login/mfa" {
		t.Fatalf("after the password %s is at %q, want /login/mfa", user, got)
	}
	if shot != "" {
		checkAtWidths(t, ctx, shot, lang, user)
	}
	if err := chromedp.Run(ctx,
		chromedp.SendKeys(`#code`, code, chromedp.ByID),
		chromedp.Click(`#mfa-submit`, chromedp.ByID),
		chromedp.WaitNotPresent(`#mfa-submit`, chromedp.ByID),
	); err != nil {
		t.Fatalf("code step for %s: %v", user, err)
	}
}

// browserLogout uses the logout button in the page header.
func browserLogout(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := chromedp.Run(ctx,
		chromedp.Click(`header form[action="/logout"] button`, chromedp.ByQuery),
		chromedp.WaitVisible(`#username`, chromedp.ByID),
	); err != nil {
		t.Fatalf("logout: %v", err)
	}
}

// downloadsTo sets the browser's downloads to go to dir and returns a
// channel with the GUID (the file name) of each completed one.
func downloadsTo(t *testing.T, ctx context.Context, dir string) <-chan string {
	t.Helper()
	done := make(chan string, 4)
	listen := func(ev any) {
		if e, ok := ev.(*browser.EventDownloadProgress); ok && e.State == browser.DownloadProgressStateCompleted {
			select {
			case done <- e.GUID:
			default:
			}
		}
	}
	chromedp.ListenTarget(ctx, listen)
	chromedp.ListenBrowser(ctx, listen)
	if err := chromedp.Run(ctx, browser.SetDownloadBehavior(browser.SetDownloadBehaviorBehaviorAllowAndName).WithDownloadPath(dir).WithEventsEnabled(true)); err != nil {
		t.Fatal(err)
	}
	return done
}

// browserDownload fills the certificate form and returns the .p12 the
// browser saved.
func browserDownload(t *testing.T, ctx context.Context, dir string, done <-chan string) []byte {
	t.Helper()
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(`#issue-form`, chromedp.ByID),
		chromedp.SendKeys(`#issue-form #password`, p12Password, chromedp.ByQuery),
		chromedp.SendKeys(`#password_confirm`, p12Password, chromedp.ByID),
		chromedp.Click(`input[name="encryption"][value="compat"]`, chromedp.ByQuery),
		chromedp.Click(`#issue-submit`, chromedp.ByID),
	); err != nil {
		t.Fatalf("certificate form: %v", err)
	}
	return savedFile(t, ctx, done, dir, "")
}

// savedFile waits for the next download downloadsTo reports and returns
// the saved file; logs (the portal's, or "") go with a failure.
func savedFile(t *testing.T, ctx context.Context, done <-chan string, dir, logs string) []byte {
	t.Helper()
	select {
	case guid := <-done:
		data, err := os.ReadFile(filepath.Join(dir, guid))
		if err != nil {
			t.Fatal(err)
		}
		return data
	case <-ctx.Done():
		t.Fatalf("download did not complete: %v\n%s", ctx.Err(), logs)
	}
	return nil
}

// TestBrowserMFAJourney walks Login MFA end to end in Chromium, in English
// (alice) and Korean (bob), at 390 and 1280 px: `setup --mfa totp`; the
// helpdesk agent (enrolled by the operator) logs in with password and code
// and makes the user's one-time enrolment link; the user opens it, logs in
// with the password, and the test reads the QR code off the screen into the
// otpauth secret, computes the code and confirms; the user logs out, logs
// in with password and a new code (after one wrong code), downloads a .p12
// and the file opens.
func TestBrowserMFAJourney(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	out, err := runSetupCmd(v, "--mfa", "totp")
	if err != nil {
		t.Fatalf("setup --mfa totp: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Login MFA \(TOTP\) method id: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("setup printed no method id:\n%s", out)
	}
	helenSecret := adminEnrol(t, v, "helen", m[1]) // the operator's bootstrap (docs/mfa.md)
	p := startPortal(t, v, nil)
	clock := &totpClock{}

	for _, tc := range []struct{ lang, user string }{{"en", "alice"}, {"ko", "bob"}} {
		t.Run(tc.lang, func(t *testing.T) {
			ctx := newChromeWithin(t, 6*time.Minute)
			dlDir := t.TempDir()
			done := downloadsTo(t, ctx, dlDir)
			password := v.Password(t, tc.user)

			// The helpdesk agent makes the link.
			browserMFALogin(t, ctx, p.URL, tc.lang, "helen", v.Password(t, "helen"), clock.next(t, helenSecret), "mfa-code")
			if got := currentPath(t, ctx); got != "/helpdesk" {
				t.Fatalf("helen landed on %q after her code", got)
			}
			var link string
			if err := chromedp.Run(ctx,
				chromedp.Navigate(p.URL+"/helpdesk/users/"+tc.user),
				chromedp.WaitVisible(`#mfa-enrol`, chromedp.ByID),
				chromedp.SendKeys(`#mfa-ticket`, "INC-77", chromedp.ByID),
				chromedp.Click(`#mfa-enrol-submit`, chromedp.ByID),
				chromedp.WaitVisible(`#enrol-link`, chromedp.ByID),
				chromedp.Text(`#enrol-link`, &link, chromedp.ByID),
			); err != nil {
				t.Fatalf("make the enrolment link: %v", err)
			}
			checkAtWidths(t, ctx, "mfa-enrol-link", tc.lang, tc.user)
			link = strings.TrimSpace(link)
			// The copy button puts exactly the link on the clipboard.
			var copied, said string
			grant := browser.GrantPermissions([]browser.PermissionType{browser.PermissionTypeClipboardReadWrite, browser.PermissionTypeClipboardSanitizedWrite}).WithOrigin(p.URL)
			if err := grant.Do(cdp.WithExecutor(ctx, chromedp.FromContext(ctx).Browser)); err != nil {
				t.Fatalf("grant clipboard access: %v", err)
			}
			if err := chromedp.Run(ctx,
				chromedp.Click(`#enrol-link-copy`, chromedp.ByID),
				chromedp.Poll(`document.getElementById('enrol-link-status').textContent`, &said, chromedp.WithPollingTimeout(5*time.Second)),
				chromedp.Evaluate(`navigator.clipboard.readText()`, &copied, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }),
			); err != nil {
				t.Fatalf("copy the enrolment link: %v", err)
			}
			if copied != link || !strings.Contains(said, i18n.T(i18n.Lang(tc.lang), "enrol.link_copied")) {
				t.Errorf("copy button: clipboard %q, status %q; want the link %q and %q", copied, said, link, i18n.T(i18n.Lang(tc.lang), "enrol.link_copied"))
			}
			if !strings.HasPrefix(link, p.URL+"/enrol#token=") {
				t.Fatalf("enrolment link %q: want the token in the fragment", link)
			}
			browserLogout(t, ctx)

			// The user opens the link and logs in with the password.
			if err := chromedp.Run(ctx, chromedp.Navigate(link), chromedp.WaitVisible(`#enrol-submit`, chromedp.ByID)); err != nil {
				t.Fatalf("open the link: %v", err)
			}
			// The page script took the token from the fragment into the
			// form and out of the address bar.
			var href string
			var codeHidden bool
			var filled bool
			if err := chromedp.Run(ctx, chromedp.Location(&href),
				chromedp.Evaluate(`document.getElementById('enrol-code').hidden`, &codeHidden),
				chromedp.Evaluate(`document.getElementById('enrol-token').value.length > 20`, &filled)); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(href, "#") || strings.Contains(href, "token") || !codeHidden || !filled {
				t.Errorf("after opening the link: address %q, code field hidden %v, filled %v", href, codeHidden, filled)
			}
			checkAtWidths(t, ctx, "mfa-enrol", tc.lang)
			if err := chromedp.Run(ctx,
				chromedp.SendKeys(`#username`, tc.user, chromedp.ByID),
				chromedp.SendKeys(`#password`, password, chromedp.ByID),
				chromedp.Click(`#enrol-submit`, chromedp.ByID),
				chromedp.WaitVisible(`#totp-qr`, chromedp.ByID),
			); err != nil {
				t.Fatalf("enrolment password step: %v", err)
			}
			checkAtWidths(t, ctx, "mfa-enrol-scan", tc.lang, tc.user)

			// The QR code as the browser renders it, read like a phone would.
			var shot []byte
			var shown string
			if err := chromedp.Run(ctx,
				chromedp.ScrollIntoView(`#totp-qr`, chromedp.ByID),
				chromedp.Screenshot(`#totp-qr`, &shot, chromedp.ByID),
				chromedp.Text(`#totp-secret`, &shown, chromedp.ByID),
			); err != nil {
				t.Fatalf("QR code: %v", err)
			}
			key, err := otp.NewKeyFromURL(decodeQR(t, shot))
			if err != nil {
				t.Fatalf("the QR code is not an otpauth URL: %v", err)
			}
			if key.Type() != "totp" || key.Period() != 30 || key.Digits() != otp.DigitsSix || key.Issuer() != "certportal" {
				t.Fatalf("otpauth key: type %s period %d digits %d issuer %q", key.Type(), key.Period(), key.Digits(), key.Issuer())
			}
			secret := key.Secret()
			if strings.ReplaceAll(strings.TrimSpace(shown), " ", "") != secret || !strings.Contains(shown, " ") {
				t.Fatalf("the key shown for typing in (%q) is not the QR code's, in groups of four", shown)
			}
			// A wrong code first: the QR page comes back, the same key, in
			// the page's language, saying what to try.
			var again string
			if err := chromedp.Run(ctx,
				chromedp.SendKeys(`#code`, wrongCode(t, secret), chromedp.ByID),
				chromedp.Click(`#mfa-submit`, chromedp.ByID),
				chromedp.WaitVisible(`#scan-again`, chromedp.ByID),
				chromedp.Text(`#totp-secret`, &again, chromedp.ByID),
			); err != nil {
				t.Fatalf("wrong code from the QR page: %v", err)
			}
			if again != shown {
				t.Errorf("the QR page after a wrong code shows key %q, want %q", again, shown)
			}
			checkAtWidths(t, ctx, "mfa-enrol-scan-again", tc.lang, tc.user)
			if err := chromedp.Run(ctx,
				chromedp.SendKeys(`#code`, clock.next(t, secret), chromedp.ByID),
				chromedp.Click(`#mfa-submit`, chromedp.ByID),
				chromedp.WaitVisible(`#issue-form`, chromedp.ByID),
			); err != nil {
				t.Fatalf("confirm the enrolment with a code: %v", err)
			}
			checkAtWidths(t, ctx, "mfa-enrolled-dashboard", tc.lang, tc.user)
			browserLogout(t, ctx)

			// Next login: password, a wrong code (retry allowed), the right one.
			if err := chromedp.Run(ctx,
				chromedp.Navigate(p.URL+"/login?lang="+tc.lang),
				chromedp.WaitVisible(`#username`, chromedp.ByID),
				chromedp.SendKeys(`#username`, tc.user, chromedp.ByID),
				chromedp.SendKeys(`#password`, password, chromedp.ByID),
				chromedp.Click(`#login-submit`, chromedp.ByID),
				chromedp.WaitVisible(`#code`, chromedp.ByID),
				chromedp.SendKeys(`#code`, wrongCode(t, secret), chromedp.ByID),
				chromedp.Click(`#mfa-submit`, chromedp.ByID),
				chromedp.WaitVisible(`#login-error`, chromedp.ByID),
			); err != nil {
				t.Fatalf("wrong code: %v", err)
			}
			checkAtWidths(t, ctx, "mfa-code-refused", tc.lang, tc.user)
			if err := chromedp.Run(ctx,
				chromedp.SendKeys(`#code`, clock.next(t, secret), chromedp.ByID),
				chromedp.Click(`#mfa-submit`, chromedp.ByID),
				chromedp.WaitVisible(`#issue-form`, chromedp.ByID),
			); err != nil {
				t.Fatalf("login with the code: %v", err)
			}
			data := browserDownload(t, ctx, dlDir, done)
			_, cert, chain, err := pkcs12.DecodeChain(data, p12Password)
			if err != nil {
				t.Fatalf("downloaded file is not a valid .p12: %v", err)
			}
			if cert.Subject.CommonName != tc.user+"@example.com" || len(chain) < 2 {
				t.Fatalf("downloaded certificate: CN %q, chain %d", cert.Subject.CommonName, len(chain))
			}
		})
	}
}

// wrongCode is a six-digit code no step Vault accepts now would give.
func wrongCode(t *testing.T, secret string) string {
	t.Helper()
	now := time.Now()
	valid := map[string]bool{}
	for _, d := range []time.Duration{-60 * time.Second, -30 * time.Second, 0, 30 * time.Second, 60 * time.Second} {
		valid[code(t, secret, now.Add(d))] = true
	}
	for _, c := range []string{"000000", "123456", "999999"} {
		if !valid[c] {
			return c
		}
	}
	t.Fatal("no wrong code found")
	return ""
}
