package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	vaultapi "github.com/hashicorp/vault/api"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/nginxcerts"
	"github.com/certportal/certportal/internal/nginxconf"
	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/nginxtest"
	"github.com/certportal/certportal/internal/testenv/p12tools"
)

// recorder is a reverse proxy in front of the portal that keeps every
// request the portal receives (method, URL, headers, body), so a test can
// show what never reached the server. The browser knows only its address.
type recorder struct {
	URL  string
	mu   sync.Mutex
	reqs [][]byte
}

func recordRequests(t *testing.T, portalURL string) *recorder {
	t.Helper()
	target, err := url.Parse(portalURL)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		dump, _ := httputil.DumpRequest(r, false)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, append(dump, body...))
		rec.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rec.URL = srv.URL
	return rec
}

// requests returns what was recorded, and the number of posts among it.
func (rec *recorder) requests() (all []byte, posts int) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.reqs {
		all = append(all, r...)
		all = append(all, '\n')
		if bytes.HasPrefix(r, []byte("POST ")) {
			posts++
		}
	}
	return all, posts
}

// secretForms are the ways a private key or a password could travel or
// rest: the key's PKCS#8 and SEC1 DER, their PEM and base64 (standard and
// URL alphabets, as a page script would send them), the scalar D in raw
// bytes, hex and base64; the password as typed, form-encoded and base64.
func secretForms(t *testing.T, key *ecdsa.PrivateKey, password string) map[string][]byte {
	t.Helper()
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	d, err := key.Bytes() // the raw 32-byte scalar
	if err != nil {
		t.Fatal(err)
	}
	forms := map[string][]byte{
		"password":             []byte(password),
		"password, form-coded": []byte(url.QueryEscape(password)),
		"password, base64":     []byte(base64.StdEncoding.EncodeToString([]byte(password))),
		"D":                    d,
		"D, hex":               []byte(hex.EncodeToString(d)),
		"D, base64":            []byte(base64.RawStdEncoding.EncodeToString(d)),
		"D, base64url":         []byte(base64.RawURLEncoding.EncodeToString(d)),
		"D, decimal":           []byte(new(big.Int).SetBytes(d).String()),
	}
	for name, der := range map[string][]byte{"PKCS#8": pkcs8, "SEC1": sec1} {
		forms[name+" DER"] = der
		forms[name+" PEM"] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		// The body of a PEM block, cut as the encoder cuts its lines.
		forms[name+" base64"] = []byte(base64.StdEncoding.EncodeToString(der)[:64])
		forms[name+" base64url"] = []byte(base64.RawURLEncoding.EncodeToString(der))
		forms[name+" base64, form-coded"] = []byte(url.QueryEscape(base64.StdEncoding.EncodeToString(der)))
	}
	return forms
}

// leaks names the secret forms found in data.
func leaks(data []byte, forms map[string][]byte) []string {
	var found []string
	for name, f := range forms {
		if bytes.Contains(data, f) {
			found = append(found, name)
		}
	}
	return found
}

// nssClient is an NSS database (Chromium's and Firefox's certificate store
// on Linux) that trusts the portal's CA and, once a .p12 is imported with
// pk12util, presents its certificate to a TLS server with NSS's tstclnt.
type nssClient struct {
	dir string
}

func newNSS(t *testing.T, trust []*x509.Certificate) *nssClient {
	t.Helper()
	n := &nssClient{dir: t.TempDir()}
	n.run(t, "certutil", "-N", "-d", "sql:"+n.dir, "--empty-password")
	for i, c := range trust {
		f := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
		// The root is the trust anchor for servers; the issuing CAs are
		// there for the chain.
		flags := ",,"
		if bytes.Equal(c.RawIssuer, c.RawSubject) {
			flags = "C,,"
		}
		n.run(t, "certutil", "-A", "-d", "sql:"+n.dir, "-n", fmt.Sprintf("ca%d", i), "-t", flags, "-i", f)
	}
	return n
}

func (n *nssClient) run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// importP12 imports the file with pk12util and returns the nickname of the
// certificate that came with a key (certutil -L shows it as "u,u,u").
func (n *nssClient) importP12(t *testing.T, path, password string) string {
	t.Helper()
	n.run(t, "pk12util", "-i", path, "-d", "sql:"+n.dir, "-w", p12tools.PasswordFile(t, password))
	for _, line := range strings.Split(n.run(t, "certutil", "-L", "-d", "sql:"+n.dir), "\n") {
		if strings.HasSuffix(strings.TrimSpace(line), "u,u,u") {
			return strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), "u,u,u"))
		}
	}
	t.Fatal("pk12util imported no certificate with its key")
	return ""
}

// get asks addr (127.0.0.1:port) for path over TLS with NSS, presenting
// nickname's certificate (none when empty), and returns the status line
// and body.
func (n *nssClient) get(t *testing.T, addr, path, nickname string) (status, body string) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	req := filepath.Join(t.TempDir(), "request")
	if err := os.WriteFile(req, []byte("GET "+path+" HTTP/1.0\r\nHost: localhost\r\n\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-h", host, "-p", port, "-d", "sql:" + n.dir, "-V", "tls1.2:", "-A", req}
	if nickname != "" {
		args = append(args, "-n", nickname)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "tstclnt", args...).CombinedOutput()
	resp := string(out)
	i := strings.Index(resp, "HTTP/1.")
	if i < 0 {
		t.Fatalf("tstclnt got no HTTP answer (%v):\n%s", err, out)
	}
	resp = resp[i:]
	status, _, _ = strings.Cut(resp, "\r\n")
	_, body, _ = strings.Cut(resp, "\r\n\r\n")
	return status, body
}

// startSecureNginx runs Debian's nginx with the rendered template, its
// server certificate from Vault (nginx-certs), admitting the portal's
// client certificates on /secure; it returns the server and the CAs a
// client must trust.
func startSecureNginx(t *testing.T, v *testenv.Vault, portalURL string) (*nginxtest.Nginx, []*x509.Certificate) {
	t.Helper()
	_, cfg := syncNginxCerts(t, v)
	certDir := cfg.Dir
	params := nginxconf.Params{ServerName: "localhost", Listen: nginxtest.FreeAddr(t), PortalURL: portalURL + "/",
		ServerCert: filepath.Join(certDir, nginxcerts.ServerCertFile), ServerKey: filepath.Join(certDir, nginxcerts.ServerKeyFile),
		ClientCA: filepath.Join(certDir, nginxcerts.ClientCAFile), CRL: filepath.Join(certDir, nginxcerts.CRLFile)}
	var conf bytes.Buffer
	if err := nginxconf.Render(&conf, params); err != nil {
		t.Fatal(err)
	}
	n := nginxtest.Start(t, params.Listen, conf.Bytes())
	// The server's chain (it may come from its own issuing CA) and the
	// client CAs: the root among them is the one trust anchor.
	trust := append(readPEMCerts(t, params.ServerCert)[1:], readPEMCerts(t, params.ClientCA)...)
	return n, trust
}

// TestBrowserDeviceKey is the device-key path end to end in Debian's
// chromium: alice logs in and, with "create the key on this device",
// downloads a .p12 in each encoding. Each file holds a key matching its
// certificate, opens in OpenSSL 3 (no -legacy), NSS, keytool and Python,
// and, imported into an NSS database with pk12util, gets through a real
// nginx to /secure. The inventory records the encoding the browser chose
// and that the key was made on the device (the renew form and the
// helpdesk page show it), the trail the public key's fingerprint. Every
// request the portal received (recorded by a proxy in front of it), its
// log and its database files (with the WAL) hold no form of either private
// key and not the file password.
func TestBrowserDeviceKey(t *testing.T) {
	if _, err := os.Stat(filepath.Join(testenv.RepoRoot(t), "web", "wasm", "devicekey.wasm")); err != nil {
		t.Fatalf("no device-key module in web/wasm (run make build): %v", err)
	}
	for _, bin := range []string{"pk12util", "certutil", "tstclnt"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s (libnss3-tools) is not installed: run deploy/scripts/deps.sh", bin)
		}
	}
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	rec := recordRequests(t, p.URL)
	ctx := newChrome(t)
	dlDir := t.TempDir()
	done := downloadsTo(t, ctx, dlDir)
	if err := chromedp.Run(ctx,
		chromedp.Navigate(rec.URL+"/"),
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, "alice", chromedp.ByID),
		chromedp.SendKeys(`#password`, v.Password(t, "alice"), chromedp.ByID),
		chromedp.Click(`#login-submit`, chromedp.ByID),
		chromedp.WaitVisible(`#issue-form`, chromedp.ByID),
	); err != nil {
		t.Fatalf("browser: %v\nportal log:\n%s", err, p.Logs.String())
	}

	type issued struct {
		enc  string
		file string
		key  *ecdsa.PrivateKey
		cert *x509.Certificate
	}
	var files []issued
	for _, enc := range []string{"modern", "compat"} {
		if err := chromedp.Run(ctx,
			chromedp.Navigate(rec.URL+"/"),
			chromedp.WaitVisible(`#key-device`, chromedp.ByID), // shown by the page script
			chromedp.Click(`#key-device`, chromedp.ByID),
			chromedp.SendKeys(`#label`, "laptop "+enc, chromedp.ByID),
			chromedp.SendKeys(`#password`, p12Password, chromedp.ByID),
			chromedp.SendKeys(`#password_confirm`, p12Password, chromedp.ByID),
			chromedp.Click(`input[name="encryption"][value="`+enc+`"]`, chromedp.ByQuery),
			chromedp.Click(`#issue-submit`, chromedp.ByID),
		); err != nil {
			t.Fatalf("browser, %s: %v\nportal log:\n%s", enc, err, p.Logs.String())
		}
		data := savedFile(t, ctx, done, dlDir, p.Logs.String())
		key, cert, chain, err := pkcs12.DecodeChain(data, p12Password)
		if err != nil {
			t.Fatalf("%s: saved file is not a valid .p12: %v", enc, err)
		}
		ec, ok := key.(*ecdsa.PrivateKey)
		if !ok || !ec.PublicKey.Equal(cert.PublicKey) || cert.Subject.CommonName != "alice@example.com" || len(chain) != 2 {
			t.Fatalf("%s: saved .p12: %T key, CN %q, chain %d", enc, key, cert.Subject.CommonName, len(chain))
		}
		path := filepath.Join(t.TempDir(), "alice-"+enc+".p12")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, issued{enc, path, ec, cert})
	}
	if files[0].key.Equal(files[1].key) {
		t.Fatal("both files hold the same key")
	}

	// The programs users open .p12 files with, for both encodings.
	for _, f := range files {
		for _, tl := range p12tools.Tools {
			out, err := tl.Run(t, tl.Path(t), f.file, p12Password)
			if err != nil {
				t.Errorf("%s does not open the browser's %s file: %v\n%s", tl.Name, f.enc, err, out)
			} else if tl.Name != "openssl" && !strings.Contains(string(out), "alice@example.com") {
				t.Errorf("%s, %s file: output lacks the subject:\n%s", tl.Name, f.enc, out)
			}
		}
	}

	// Imported into NSS with pk12util, each certificate gets through nginx
	// to /secure; without one nginx refuses.
	n, trust := startSecureNginx(t, v, rec.URL)
	if status, _ := newNSS(t, trust).get(t, n.Addr, "/secure/whoami", ""); !strings.Contains(status, " 403") {
		t.Fatalf("nginx without a client certificate: %q, want 403", status)
	}
	for _, f := range files {
		db := newNSS(t, trust)
		nick := db.importP12(t, f.file, p12Password)
		status, body := db.get(t, n.Addr, "/secure/whoami", nick)
		serial := strings.ToUpper(hex.EncodeToString(f.cert.SerialNumber.Bytes()))
		if !strings.Contains(status, " 200") || !strings.Contains(body, "subject: CN=alice@example.com") ||
			!strings.Contains(body, "verify: SUCCESS") || !strings.Contains(strings.TrimLeft(field(body, "serial"), "0"), strings.TrimLeft(serial, "0")) {
			t.Errorf("nginx /secure/whoami with the %s file from NSS: %q\n%s", f.enc, status, body)
		}
	}

	// The inventory: the encoding the browser chose, and the key's origin.
	certs, _ := recorded(t, p.DB)
	byEnc := map[string]*store.Certificate{}
	for _, c := range certs {
		byEnc[c.Encryption] = c
	}
	if len(certs) != 2 || byEnc["modern"] == nil || byEnc["compat"] == nil ||
		byEnc["modern"].KeyOrigin != store.KeyOriginDevice || byEnc["compat"].KeyOrigin != store.KeyOriginDevice {
		t.Fatalf("inventory: %+v", certs)
	}
	sqldb := openSQLite(t, p.DB)
	for _, f := range files {
		row := byEnc[f.enc]
		if row.Serial != vaultSerial(f.cert) || row.Label != "laptop "+f.enc {
			t.Errorf("%s row %+v for certificate %s", f.enc, row, vaultSerial(f.cert))
		}
		var details string
		if err := sqldb.QueryRow(`SELECT details FROM audit_events WHERE action = 'certificate.issue' AND serial = ?`, row.Serial).Scan(&details); err != nil {
			t.Fatal(err)
		}
		var d map[string]string
		if err := json.Unmarshal([]byte(details), &d); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(f.cert.RawSubjectPublicKeyInfo)
		if d["key_origin"] != "device" || d["encryption"] != f.enc || d["public_key_sha256"] != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: trail details %v", f.enc, d)
		}
	}
	// Renewing keeps the file's encryption, whichever side packed it (on
	// this platform the browser's default is modern).
	var renewEnc string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(rec.URL+"/certificates/"+byEnc["compat"].Serial+"/renew"),
		chromedp.WaitVisible(`#issue-form`, chromedp.ByID),
		chromedp.Evaluate(`document.querySelector('input[name=encryption]:checked').value`, &renewEnc),
	); err != nil {
		t.Fatal(err)
	}
	if renewEnc != "compat" {
		t.Errorf("renew form of the compat device-key certificate preselects %q", renewEnc)
	}
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	page := helen.get("/helpdesk/users/alice")
	text := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(string(page.Body), "") // the words, not the markup
	for _, want := range []string{"compatible · key made on device", "modern · key made on device"} {
		if !strings.Contains(text, want) {
			t.Errorf("helpdesk page of alice lacks %q", want)
		}
	}

	// Nothing secret reached the portal or stayed with it.
	bodies, posts := rec.requests()
	if posts < 3 || !bytes.Contains(bodies, []byte("POST /certificates/csr")) || !bytes.Contains(bodies, []byte("BEGIN+CERTIFICATE+REQUEST")) {
		t.Fatalf("the recorder saw %d posts and no CSR: it does not see what the portal receives", posts)
	}
	files2, _ := filepath.Glob(p.DB + "*") // the database, its WAL and shm
	if _, err := os.Stat(p.DB + "-wal"); err != nil {
		t.Fatalf("no WAL to scan beside the database (%v): %v", files2, err)
	}
	for _, f := range files {
		forms := secretForms(t, f.key, p12Password)
		if l := leaks(bodies, forms); len(l) > 0 {
			t.Errorf("%s file: requests to the portal carry %v", f.enc, l)
		}
		if l := leaks([]byte(p.Logs.String()), forms); len(l) > 0 {
			t.Errorf("%s file: the portal's log holds %v", f.enc, l)
		}
		for _, df := range files2 {
			b, err := os.ReadFile(df)
			if err != nil {
				t.Fatal(err)
			}
			if l := leaks(b, forms); len(l) > 0 {
				t.Errorf("%s file: %s holds %v", f.enc, filepath.Base(df), l)
			}
		}
	}
	for _, df := range files2 {
		if b, _ := os.ReadFile(df); bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a PEM private key", filepath.Base(df))
		}
	}
	assertNoSecrets(t, p.Logs.String(), p12Password)
}

// syncNginxCerts gives Nginx its server certificate, client CA and CRL from
// Vault as nginx-certs does, with a token of the Nginx policy: the loopback
// server certificate for localhost and 127.0.0.1. It returns that client
// (for later syncs) and the configuration, whose Dir holds the files.
func syncNginxCerts(t *testing.T, v *testenv.Vault) (*vaultapi.Client, nginxcerts.Config) {
	t.Helper()
	ctx := context.Background()
	o := setup.Defaults()
	o.ServerIPSANs = []string{"127.0.0.1"} // the loopback server certificate carries it
	if _, err := setup.EnsureServerRole(ctx, v.Admin, o, setup.DefaultServerRole, []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	tok, err := v.Admin.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{setup.NginxPolicyName}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	nginxVault, err := v.Admin.Clone()
	if err != nil {
		t.Fatal(err)
	}
	nginxVault.SetToken(tok.Auth.ClientToken)
	cfg := nginxcerts.Config{Dir: t.TempDir(), ServerName: "localhost", IPSANs: []string{"127.0.0.1"},
		PKIMount: nginxcerts.DefaultPKIMount, RootMount: nginxcerts.DefaultRootMount, ServerMount: nginxcerts.DefaultServerMount,
		Role: nginxcerts.DefaultRole}
	if _, err := nginxcerts.Sync(ctx, nginxVault, cfg, time.Now()); err != nil {
		t.Fatal(err)
	}
	return nginxVault, cfg
}
