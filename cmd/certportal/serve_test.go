package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/testenv"
)

const p12Password = "correct horse battery staple"

// TestIssueFlow is the product's core promise over real HTTP against the real
// Vault: log in, download a .p12, and the file holds a client certificate for
// the user that chains to /ca.pem — readable by go-pkcs12 and by OpenSSL 3
// without -legacy, for both encryptions.
func TestIssueFlow(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	alicePW := v.Password(t, "alice")
	b.mustLogin("alice", alicePW)

	home := b.get("/")
	if home.StatusCode != http.StatusOK || !bytes.Contains(home.Body, []byte("alice@example.com")) {
		t.Fatalf("dashboard: %d\n%s", home.StatusCode, home.Body)
	}
	caResp := b.get("/ca.pem")
	if caResp.StatusCode != http.StatusOK {
		t.Fatalf("/ca.pem: %d", caResp.StatusCode)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for rest := caResp.Body; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(c.RawIssuer, c.RawSubject) {
			roots.AddCert(c)
		} else {
			inter.AddCert(c)
		}
	}

	for _, enc := range []string{"modern", "compat"} {
		t.Run(enc, func(t *testing.T) {
			r := b.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", enc))
			if r.StatusCode != http.StatusOK {
				t.Fatalf("issue: %d\n%s", r.StatusCode, r.Body)
			}
			for h, want := range map[string]string{
				"Content-Type":  "application/x-pkcs12",
				"Cache-Control": "no-store",
			} {
				if got := r.Header.Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
			if disp, params, err := mime.ParseMediaType(r.Header.Get("Content-Disposition")); err != nil || disp != "attachment" || params["filename"] != "alice@example.com-"+time.Now().UTC().Format("2006-01-02")+".p12" {
				t.Errorf("Content-Disposition = %q", r.Header.Get("Content-Disposition"))
			}
			key, cert, chain, err := pkcs12.DecodeChain(r.Body, p12Password)
			if err != nil {
				t.Fatalf("go-pkcs12: %v", err)
			}
			if key == nil || len(chain) < 2 {
				t.Fatalf("want a key and a chain of issuing CA and root, got key=%v chain=%d", key != nil, len(chain))
			}
			if cert.Subject.CommonName != "alice@example.com" || len(cert.EmailAddresses) != 1 || cert.EmailAddresses[0] != "alice@example.com" {
				t.Errorf("identity: CN %q emails %v", cert.Subject.CommonName, cert.EmailAddresses)
			}
			if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
				t.Errorf("ext key usage = %v, want client auth only", cert.ExtKeyUsage)
			}
			if len(cert.DNSNames) != 0 || len(cert.IPAddresses) != 0 {
				t.Errorf("unexpected SANs: %v %v", cert.DNSNames, cert.IPAddresses)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("certificate does not chain to /ca.pem: %v", err)
			}
			if serial := r.Header.Get("X-Certificate-Serial"); serial == "" || !strings.EqualFold(strings.ReplaceAll(serial, ":", ""), cert.SerialNumber.Text(16)) && !strings.HasSuffix(strings.ReplaceAll(serial, ":", ""), cert.SerialNumber.Text(16)) {
				t.Errorf("serial header %q does not match certificate %s", serial, cert.SerialNumber.Text(16))
			}
			// OpenSSL 3, no -legacy: what users' tools and most importers do.
			path := filepath.Join(t.TempDir(), "alice.p12")
			if err := os.WriteFile(path, r.Body, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("openssl", "pkcs12", "-in", path, "-passin", "pass:"+p12Password, "-nodes").CombinedOutput()
			if err != nil {
				t.Fatalf("openssl pkcs12: %v\n%s", err, out)
			}
			if !bytes.Contains(out, []byte("PRIVATE KEY")) || bytes.Count(out, []byte("BEGIN CERTIFICATE")) != 3 {
				t.Fatalf("openssl did not find key + 3 certificates:\n%s", out)
			}
		})
	}

	assertNoSecrets(t, p.Logs.String(), alicePW, p12Password)
}

// assertNoSecrets fails if text contains a password, a Vault token or key material.
func assertNoSecrets(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("a secret appears in the output")
		}
	}
	for _, marker := range []string{"PRIVATE KEY", "hvs.", "s.", "X-Vault-Token"} {
		if marker == "s." {
			continue // too short to search for; hvs. covers Vault 1.10+ tokens
		}
		if strings.Contains(text, marker) {
			t.Errorf("output contains %q", marker)
		}
	}
}

// TestVaultRefusesOtherIdentity proves the security model's base: alice's own
// token cannot get a certificate naming bob from Vault directly, as CN or SAN.
func TestVaultRefusesOtherIdentity(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	c, err := v.Admin.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	sec, err := c.Logical().Write("auth/userpass/login/alice", map[string]any{"password": v.Password(t, "alice")})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(sec.Auth.ClientToken)
	tests := []struct {
		name string
		data map[string]any
		ok   bool
	}{
		{"own identity", map[string]any{"common_name": "alice@example.com"}, true},
		{"bob as CN", map[string]any{"common_name": "bob@example.com"}, false},
		{"bob as email SAN", map[string]any{"common_name": "alice@example.com", "alt_names": "bob@example.com"}, false},
		{"bare domain", map[string]any{"common_name": "example.com"}, false},
		{"wildcard", map[string]any{"common_name": "*@example.com"}, false},
		{"subdomain trick", map[string]any{"common_name": "alice@example.com.evil.test"}, false},
		{"ip SAN", map[string]any{"common_name": "alice@example.com", "ip_sans": "127.0.0.1"}, false},
		{"localhost", map[string]any{"common_name": "localhost"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Logical().Write("pki/issue/user-auth", tt.data)
			if (err == nil) != tt.ok {
				t.Fatalf("issue %v: err = %v, want ok=%v", tt.data, err, tt.ok)
			}
		})
	}
	// And no other path: the user policy grants nothing else in pki.
	if _, err := c.Logical().Write("pki/revoke", map[string]any{"serial_number": "01"}); err == nil {
		t.Error("a user token could call pki/revoke")
	}
	if _, err := c.Logical().Write("pki/sign-verbatim", map[string]any{"csr": "x"}); err == nil {
		t.Error("a user token could call pki/sign-verbatim")
	}
}

// TestLogoutRevokesToken: after logout the Vault token is gone and the old
// cookie opens nothing.
func TestLogoutRevokesToken(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	before := accessors(t, v)
	b := newBrowser(t, p.URL)
	b.mustLogin("bob", v.Password(t, "bob"))
	var acc string
	for a := range accessors(t, v) {
		if !before[a] {
			acc = a
		}
	}
	if acc == "" {
		t.Fatal("login created no Vault token")
	}
	u, _ := url.Parse(p.URL)
	oldCookies := b.c.Jar.Cookies(u)

	if r := b.post("/logout", nil); r.StatusCode != http.StatusSeeOther || r.Header.Get("Clear-Site-Data") != `"cache"` {
		t.Fatalf("logout: %d, Clear-Site-Data %q (want \"cache\": the pages of the session go with it)", r.StatusCode, r.Header.Get("Clear-Site-Data"))
	}
	if _, err := v.Admin.Logical().Write("auth/token/lookup-accessor", map[string]any{"accessor": acc}); err == nil {
		t.Fatal("token still valid after logout")
	}
	replay := newBrowser(t, p.URL)
	replay.c.Jar.SetCookies(u, oldCookies)
	if r := replay.get("/"); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login" {
		t.Fatalf("old cookie after logout: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := replay.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern")); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("issue with old cookie: %d", r.StatusCode)
	}
}

// accessors lists the accessors of the Vault tokens users hold: the
// portal's own AppRole tokens are left out, since the portal logs in as
// itself whenever it needs to (at start it looks up its secret id), which
// may fall between a test's two listings.
func accessors(t *testing.T, v *testenv.Vault) map[string]bool {
	t.Helper()
	s, err := v.Admin.Logical().List("auth/token/accessors")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	keys, _ := s.Data["keys"].([]any)
	for _, k := range keys {
		look, err := v.Admin.Logical().Write("auth/token/lookup-accessor", map[string]any{"accessor": k})
		if err == nil && look != nil && strings.HasPrefix(fmt.Sprint(look.Data["path"]), "auth/approle/") {
			continue
		}
		out[k.(string)] = true
	}
	return out
}

// TestSessionCookieAndHeaders checks the cookie flags and security headers,
// over plain HTTP and over TLS (Secure, __Host- prefix, HSTS).
func TestSessionCookieAndHeaders(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	certFile, keyFile, pool := selfSigned(t)
	tests := []struct {
		name       string
		env        map[string]string
		cookieName string
		secure     bool
	}{
		{"http", nil, "certportal_session", false},
		{"https", map[string]string{"CERTPORTAL_TLS_CERT": certFile, "CERTPORTAL_TLS_KEY": keyFile}, "__Host-certportal_session", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startPortal(t, v, tt.env)
			if tt.secure && !strings.HasPrefix(p.URL, "https://") {
				t.Fatalf("portal URL %s is not https", p.URL)
			}
			b := newBrowser(t, p.URL)
			b.c.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
			r := b.post("/login", url.Values{"username": {"alice"}, "password": {v.Password(t, "alice")}})
			if r.StatusCode != http.StatusSeeOther {
				t.Fatalf("login: %d", r.StatusCode)
			}
			var c *http.Cookie
			for _, x := range r.Cookies() {
				if x.Name == tt.cookieName {
					c = x
				}
			}
			if c == nil {
				t.Fatalf("no %s cookie in %v", tt.cookieName, r.Header.Values("Set-Cookie"))
			}
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure != tt.secure || c.Path != "/" || c.Domain != "" {
				t.Errorf("cookie flags: %+v", c)
			}
			// The cookie carries only a signed id, never the token.
			if strings.Contains(c.Value, "hvs.") || len(c.Value) > 300 {
				t.Errorf("cookie value looks like it carries data: %d bytes", len(c.Value))
			}
			h := b.get("/login").Header
			for k, want := range map[string]string{
				"X-Content-Type-Options": "nosniff",
				"Referrer-Policy":        "no-referrer",
			} {
				if h.Get(k) != want {
					t.Errorf("%s = %q", k, h.Get(k))
				}
			}
			if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
				t.Errorf("CSP = %q", h.Get("Content-Security-Policy"))
			}
			if (h.Get("Strict-Transport-Security") != "") != tt.secure {
				t.Errorf("HSTS = %q over %s", h.Get("Strict-Transport-Security"), tt.name)
			}
		})
	}
}

// TestCrossSiteRefused: a form another site makes the browser post is refused
// before it can log in, issue or log out.
func TestCrossSiteRefused(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	tests := []struct {
		name    string
		path    string
		headers []string
	}{
		{"issue, sec-fetch-site", "/certificates", []string{"Sec-Fetch-Site", "cross-site"}},
		{"issue, foreign origin", "/certificates", []string{"Origin", "https://evil.example"}},
		{"logout", "/logout", []string{"Sec-Fetch-Site", "cross-site"}},
		{"login CSRF", "/login", []string{"Origin", "https://evil.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.post(tt.path, issueForm(p12Password, p12Password, "720h0m0s", "modern"), tt.headers...)
			if r.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d, want 403", r.StatusCode)
			}
			if r.Header.Get("Content-Type") == "application/x-pkcs12" {
				t.Fatal("a certificate was issued")
			}
		})
	}
	// Same-origin posts from the portal's own page still work.
	r := b.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern"), "Sec-Fetch-Site", "same-origin", "Origin", p.URL)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("same-origin issue: %d", r.StatusCode)
	}
}

// TestMetrics: /metrics reports the requests, the issuance and the
// revocation by route, encryption and reason, and carries no username,
// serial, password or probed path.
func TestMetrics(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	alicePW := v.Password(t, "alice")
	if r := newBrowser(t, p.URL).post("/login", url.Values{"username": {"alice"}, "password": {"wrong-" + alicePW}}); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad login: %d", r.StatusCode)
	}
	b.mustLogin("alice", alicePW)
	serial := b.issue("modern")
	if r := b.post("/certificates/"+serial+"/revoke", url.Values{"reason": {"lost"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", r.StatusCode)
	}
	b.get("/wp-admin/setup-config.php")

	r := newBrowser(t, p.URL).get("/metrics")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", r.StatusCode)
	}
	body := string(r.Body)
	for _, want := range []string{
		`certportal_certificates_issued_total{encryption="modern"} 1`,
		`certportal_certificates_revoked_total{reason="lost"} 1`,
		`certportal_http_requests_total{code="200",method="POST",route="/certificates"} 1`,
		`certportal_http_requests_total{code="401",method="POST",route="/login"} 1`,
		`certportal_http_requests_total{code="303",method="POST",route="/certificates/{serial}/revoke"} 1`,
		`certportal_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`certportal_vault_issue_duration_seconds_count 1`,
		`certportal_audit_write_failures_total 0`,
		"go_goroutines ", "process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, secret := range []string{"alice", serial, alicePW, p12Password, "wp-admin"} {
		if strings.Contains(body, secret) {
			t.Errorf("/metrics contains %q", secret)
		}
	}
}
