package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/testenv"
)

// chromiumPath finds Debian's chromium; the test fails, never skips, without it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not installed: run `make deps` (apt-get install chromium)")
	return ""
}

// newChrome starts Debian's chromium for one test, with 90 s for all of
// its steps.
func newChrome(t *testing.T) context.Context {
	t.Helper()
	return newChromeWithin(t, 90*time.Second)
}

// newChromeWithin is newChrome with another deadline (a walk visits many
// pages at several widths).
func newChromeWithin(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	// Not t.TempDir: Chromium's helper processes may still be writing the
	// profile for a moment after the browser was told to stop, and
	// TempDir's cleanup then fails the test ("directory not empty") — more
	// often the busier the machine, so with the other browser tests.
	profile, err := os.MkdirTemp("", "certportal-chrome-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		for i := 0; i < 50 && os.RemoveAll(profile) != nil; i++ {
			time.Sleep(100 * time.Millisecond) // the profile is test scratch space; retry until Chromium let go
		}
	})
	return ctx
}

// TestBrowserDownload drives Debian's chromium through the real pages: log
// in, fill the form, download — the file the browser saves is a valid .p12.
// It runs twice: with the password alone, and with Vault's Login MFA
// enforced (setup --mfa totp), where the code page comes between.
func TestBrowserDownload(t *testing.T) {
	for _, mfa := range []bool{false, true} {
		name := "password"
		if mfa {
			name = "mfa"
		}
		t.Run(name, func(t *testing.T) { browserDownloadJourney(t, mfa) })
	}
}

func browserDownloadJourney(t *testing.T, mfa bool) {
	v := testenv.StartConfiguredVault(t)
	var secondFactor []chromedp.Action
	if mfa {
		secret := adminEnrol(t, v, "alice", enableMFA(t, v))
		secondFactor = []chromedp.Action{
			chromedp.WaitVisible(`#code`, chromedp.ByID),
			// The code of the moment the page asks for it: one computed
			// before the portal and the browser started is a step or two
			// old on a loaded machine, past Vault's skew of one step.
			chromedp.ActionFunc(func(ctx context.Context) error {
				return chromedp.SendKeys(`#code`, code(t, secret, time.Now()), chromedp.ByID).Do(ctx)
			}),
			chromedp.Click(`#mfa-submit`, chromedp.ByID),
		}
	}
	p := startPortal(t, v, nil)
	ctx := newChrome(t)
	dlDir := t.TempDir()

	done := downloadsTo(t, ctx, dlDir)
	var heading string
	steps := []chromedp.Action{
		chromedp.Navigate(p.URL + "/"),
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, "alice", chromedp.ByID),
		chromedp.SendKeys(`#password`, v.Password(t, "alice"), chromedp.ByID),
		chromedp.Click(`#login-submit`, chromedp.ByID),
	}
	steps = append(steps, secondFactor...)
	err := chromedp.Run(ctx, append(steps,
		chromedp.WaitVisible(`#issue-form`, chromedp.ByID),
		chromedp.Text(`h1`, &heading, chromedp.ByQuery),
		chromedp.SendKeys(`#password`, p12Password, chromedp.ByID),
		chromedp.SendKeys(`#password_confirm`, p12Password, chromedp.ByID),
		chromedp.Click(`input[name="encryption"][value="compat"]`, chromedp.ByQuery),
		chromedp.Click(`#issue-submit`, chromedp.ByID),
	)...)
	if err != nil {
		t.Fatalf("browser: %v\nportal log:\n%s", err, p.Logs.String())
	}
	if heading != "Get a certificate" {
		t.Errorf("dashboard heading %q", heading)
	}
	data := savedFile(t, ctx, done, dlDir, "")
	_, cert, chain, err := pkcs12.DecodeChain(data, p12Password)
	if err != nil {
		t.Fatalf("downloaded file is not a valid .p12: %v", err)
	}
	if cert.Subject.CommonName != "alice@example.com" || len(chain) < 2 {
		t.Fatalf("downloaded certificate: CN %q, chain %d", cert.Subject.CommonName, len(chain))
	}

	// The page the browser still shows is the form, and the language switch works.
	var title string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(p.URL+"/?lang=ko"),
		chromedp.Text(`h1`, &title, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(title, "인증서") {
		t.Errorf("Korean heading %q", title)
	}
	if shot := os.Getenv("CERTPORTAL_SCREENSHOT"); shot != "" {
		var buf []byte
		if err := chromedp.Run(ctx, chromedp.Navigate(p.URL+"/?lang=en"), chromedp.FullScreenshot(&buf, 100)); err == nil {
			_ = os.WriteFile(shot, buf, 0o644)
		}
	}
}
