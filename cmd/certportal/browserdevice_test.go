package main

import (
	"bytes"
	"crypto/ecdsa"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/testenv"
)

// TestBrowserDeviceKey: in Debian's chromium the form's default (when the
// module is there) makes the key in the page: the saved .p12 holds a key
// matching its certificate, the inventory says the key was made on the
// device, and neither the file password nor the key's PEM reaches the
// portal's log or database files.
func TestBrowserDeviceKey(t *testing.T) {
	if _, err := os.Stat(filepath.Join(testenv.RepoRoot(t), "web", "wasm", "devicekey.wasm")); err != nil {
		t.Fatalf("no device-key module in web/wasm (run make build): %v", err)
	}
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	ctx := newChrome(t)
	dlDir := t.TempDir()
	done := downloadsTo(t, ctx, dlDir)
	if err := chromedp.Run(ctx,
		chromedp.Navigate(p.URL+"/"),
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, "alice", chromedp.ByID),
		chromedp.SendKeys(`#password`, v.Password(t, "alice"), chromedp.ByID),
		chromedp.Click(`#login-submit`, chromedp.ByID),
		chromedp.WaitVisible(`#key-device`, chromedp.ByID), // shown by the page script
		chromedp.SendKeys(`#password`, p12Password, chromedp.ByID),
		chromedp.SendKeys(`#password_confirm`, p12Password, chromedp.ByID),
		chromedp.Click(`#issue-submit`, chromedp.ByID),
	); err != nil {
		t.Fatalf("browser: %v\nportal log:\n%s", err, p.Logs.String())
	}
	data := savedFile(t, ctx, done, dlDir, p.Logs.String())
	key, cert, chain, err := pkcs12.DecodeChain(data, p12Password)
	if err != nil {
		t.Fatalf("saved file is not a valid .p12: %v", err)
	}
	if !key.(*ecdsa.PrivateKey).PublicKey.Equal(cert.PublicKey) || cert.Subject.CommonName != "alice@example.com" || len(chain) != 2 {
		t.Fatalf("saved .p12: CN %q chain %d", cert.Subject.CommonName, len(chain))
	}
	certs, _ := recorded(t, p.DB)
	if len(certs) != 1 || certs[0].Encryption != "device" {
		t.Fatalf("inventory: %+v", certs)
	}
	assertNoSecrets(t, p.Logs.String(), p12Password)
	files, _ := filepath.Glob(p.DB + "*") // the database, its WAL and shm
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(p12Password)) || bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds the file password or a private key", filepath.Base(f))
		}
	}
}
