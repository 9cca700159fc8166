package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/testenv"
)

// TestBrowserStepUp: in chromium, a download form that was filled after
// the step-up age passed comes back as the step-up page (the page script
// shows it in place); typing the file password again and the login
// password downloads the file, with the choice made before kept.
func TestBrowserStepUp(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MFA_STEP_UP": testStepUp})
	db := openSQLite(t, p.DB)
	ctx := newChrome(t)
	dlDir := t.TempDir()
	done := downloadsTo(t, ctx, dlDir)
	loginUntilStepUpDue(t, ctx, p.URL, v.Password(t, "alice"))
	var intro string
	if err := chromedp.Run(ctx,
		chromedp.SendKeys(`#label`, "Stepped laptop", chromedp.ByID),
		chromedp.SendKeys(`#password`, p12Password, chromedp.ByID),
		chromedp.SendKeys(`#password_confirm`, p12Password, chromedp.ByID),
		chromedp.Click(`input[name="encryption"][value="compat"]`, chromedp.ByQuery),
		// The server-made key's path: its step-up is the page below (the
		// device path answers JSON; TestBrowserDeviceKeyStepUp).
		chromedp.Click(`#key-server`, chromedp.ByID),
		chromedp.Click(`#issue-submit`, chromedp.ByID),
		chromedp.WaitVisible(`#stepup_password`, chromedp.ByID),
		// The page's language switch keeps the form's choices (label,
		// encryption: checked in the inventory below) and asks again.
		chromedp.Click(`header button.lang`, chromedp.ByQuery),
		chromedp.WaitVisible(`html[lang="ko"] #stepup_password`, chromedp.ByQuery),
		chromedp.Text(`#stepup-intro`, &intro, chromedp.ByID),
	); err != nil {
		t.Fatalf("browser step-up page in Korean: %v\nportal log:\n%s", err, p.Logs.String())
	}
	saveScreenshot(t, ctx, "stepup-ko")
	if err := chromedp.Run(ctx,
		chromedp.SendKeys(`#password`, p12Password, chromedp.ByID),
		chromedp.SendKeys(`#password_confirm`, p12Password, chromedp.ByID),
		chromedp.SendKeys(`#stepup_password`, v.Password(t, "alice"), chromedp.ByID),
		chromedp.Click(`#stepup-submit`, chromedp.ByID),
	); err != nil {
		t.Fatalf("browser step-up: %v\nportal log:\n%s", err, p.Logs.String())
	}
	if intro == "" {
		t.Error("the step-up page has no explanation")
	}
	data := savedFile(t, ctx, done, dlDir, "")
	if _, cert, _, err := pkcs12.DecodeChain(data, p12Password); err != nil || cert.Subject.CommonName != "alice@example.com" {
		t.Fatalf("downloaded file after step-up: %v", err)
	}
	// After the download the script shows the dashboard: "it worked".
	if err := chromedp.Run(ctx, chromedp.WaitVisible(`#issued`, chromedp.ByID)); err != nil {
		t.Fatalf("dashboard after the step-up download: %v", err)
	}
	var label, enc string
	if err := db.QueryRow(`SELECT label, encryption FROM certificates WHERE username = 'alice'`).Scan(&label, &enc); err != nil {
		t.Fatal(err)
	}
	if label != "Stepped laptop" || enc != "compat" {
		t.Errorf("certificate label %q encryption %q, want the choices made before the step-up", label, enc)
	}
	if ev := sessionEvents(t, db, "session.step_up", "alice"); len(ev) != 1 || ev[0].Outcome != "success" {
		t.Errorf("session.step_up events: %+v", ev)
	}
}

// loginUntilStepUpDue logs alice in and waits, asking the portal from the
// page, until the session's proof is older than the step-up age.
func loginUntilStepUpDue(t *testing.T, ctx context.Context, url, password string) {
	t.Helper()
	if err := chromedp.Run(ctx,
		chromedp.Navigate(url+"/"),
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, "alice", chromedp.ByID),
		chromedp.SendKeys(`#password`, password, chromedp.ByID),
		chromedp.Click(`#login-submit`, chromedp.ByID),
		chromedp.WaitVisible(`#issue-form`, chromedp.ByID),
	); err != nil {
		t.Fatalf("browser login: %v", err)
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		var due bool
		if err := chromedp.Run(ctx, chromedp.Evaluate(`fetch('/').then(r => r.text()).then(t => t.includes('name="stepup_password"'))`, &due,
			func(p *cdpruntime.EvaluateParams) *cdpruntime.EvaluateParams { return p.WithAwaitPromise(true) })); err != nil {
			t.Fatal(err)
		}
		if due {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("step-up never fell due")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestBrowserDeviceKeyStepUp: on the device-key path (the default with the
// module built) a form filled after the step-up age answers JSON; the page
// shows the form again with the step-up fields, the label and encryption
// kept, and with the login password the key made in the browser is signed.
func TestBrowserDeviceKeyStepUp(t *testing.T) {
	if _, err := os.Stat(filepath.Join(testenv.RepoRoot(t), "web", "wasm", "devicekey.wasm")); err != nil {
		t.Fatalf("no device-key module in web/wasm (run make build): %v", err)
	}
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MFA_STEP_UP": testStepUp})
	db := openSQLite(t, p.DB)
	ctx := newChrome(t)
	dlDir := t.TempDir()
	done := downloadsTo(t, ctx, dlDir)
	loginUntilStepUpDue(t, ctx, p.URL, v.Password(t, "alice"))
	var label string
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(`#key-device`, chromedp.ByID),
		chromedp.SendKeys(`#label`, "Device stepped", chromedp.ByID),
		chromedp.SendKeys(`#password`, p12Password, chromedp.ByID),
		chromedp.SendKeys(`#password_confirm`, p12Password, chromedp.ByID),
		chromedp.Click(`input[name="encryption"][value="compat"]`, chromedp.ByQuery),
		chromedp.Click(`#issue-submit`, chromedp.ByID),
		chromedp.WaitVisible(`#issue-stepup_password`, chromedp.ByID),
		chromedp.Value(`#label`, &label, chromedp.ByID),
		chromedp.SendKeys(`#password`, p12Password, chromedp.ByID),
		chromedp.SendKeys(`#password_confirm`, p12Password, chromedp.ByID),
		chromedp.SendKeys(`#issue-stepup_password`, v.Password(t, "alice"), chromedp.ByID),
		chromedp.Click(`#issue-submit`, chromedp.ByID),
	); err != nil {
		t.Fatalf("device-key step-up: %v\nportal log:\n%s", err, p.Logs.String())
	}
	if label != "Device stepped" {
		t.Errorf("label after the step-up form came back: %q", label)
	}
	data := savedFile(t, ctx, done, dlDir, "")
	if _, cert, _, err := pkcs12.DecodeChain(data, p12Password); err != nil || cert.Subject.CommonName != "alice@example.com" {
		t.Fatalf("downloaded file after step-up: %v", err)
	}
	var enc, origin string
	if err := db.QueryRow(`SELECT encryption, key_origin FROM certificates WHERE username = 'alice'`).Scan(&enc, &origin); err != nil {
		t.Fatal(err)
	}
	if enc != "compat" || origin != "device" {
		t.Errorf("certificate encryption %q, key origin %q; want compat (kept through the step-up) and device", enc, origin)
	}
	if ev := sessionEvents(t, db, "session.step_up", "alice"); len(ev) != 1 || ev[0].Outcome != "success" {
		t.Errorf("session.step_up events: %+v", ev)
	}
}
