package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
)

// TestLoginFailuresLookAlike: wrong password, unknown user and a user Vault
// will not log in (bound to another network) get the same 401 and message.
func TestLoginFailuresLookAlike(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	v.CreateUser(t, "dora", "dora-password-123", map[string]any{"token_bound_cidrs": "192.0.2.0/24"}, "certportal-user")
	p := startPortal(t, v, nil)
	tests := []struct{ name, user, password string }{
		{"wrong password", "alice", "not-her-password"},
		{"unknown user", "mallory", "whatever-password"},
		{"disabled user", "dora", "dora-password-123"},
		{"empty password", "alice", ""},
		{"path injection", "../../sys/seal", "x"},
	}
	var first []byte
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBrowser(t, p.URL)
			r := b.post("/login", url.Values{"username": {tt.user}, "password": {tt.password}})
			if r.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401\n%s", r.StatusCode, r.Body)
			}
			msg := extract(r.Body, `id="login-error">`, "<")
			if msg != "Login failed. Check your username and password." {
				t.Fatalf("message %q", msg)
			}
			if first == nil {
				first = []byte(msg)
			} else if !bytes.Equal(first, []byte(msg)) {
				t.Fatal("messages differ between causes")
			}
			for _, c := range r.Cookies() {
				if strings.Contains(c.Name, "session") && c.MaxAge >= 0 && c.Value != "" {
					t.Errorf("a session cookie was set on failure")
				}
			}
		})
	}
	// A valid Vault user without any certportal policy is refused with the
	// same 401 as a wrong password (a different answer would confirm the
	// password), and its token revoked.
	v.CreateUser(t, "outsider", "outsider-password", nil, "default")
	before := accessors(t, v)
	b := newBrowser(t, p.URL)
	if r := b.post("/login", url.Values{"username": {"outsider"}, "password": {"outsider-password"}}); r.StatusCode != http.StatusUnauthorized ||
		!bytes.Equal([]byte(extract(r.Body, `id="login-error">`, "<")), first) {
		t.Fatalf("user without portal policy: %d %q", r.StatusCode, extract(r.Body, `id="login-error">`, "<"))
	}
	if after := accessors(t, v); len(after) != len(before) {
		t.Errorf("token of refused user not revoked: %d accessors before, %d after", len(before), len(after))
	}
	assertNoSecrets(t, p.Logs.String(), "not-her-password", "dora-password-123", "outsider-password")
}

func extract(body []byte, start, end string) string {
	s := string(body)
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	if j := strings.Index(s, end); j >= 0 {
		s = s[:j]
	}
	return strings.TrimSpace(s)
}

// TestIssueBadInput: each bad form gets 400, the form again with the field
// named, and no certificate is issued in Vault.
func TestIssueBadInput(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	long := strings.Repeat("x", 20)
	tests := []struct {
		name   string
		form   url.Values
		field  string
		status int
	}{
		{"passwords differ", issueForm(long, long+"y", "720h0m0s", "modern"), "password_confirm", 400},
		{"password too short", issueForm("short-pw-11", "short-pw-11", "720h0m0s", "modern"), "password", 400},
		{"ttl not offered", issueForm(long, long, "1000h", "modern"), "ttl", 400},
		{"ttl garbage", issueForm(long, long, "forever", "modern"), "ttl", 400},
		{"unknown encryption", issueForm(long, long, "720h0m0s", "rc2"), "encryption", 400},
		{"oversized body", issueForm(strings.Repeat("p", 70<<10), "x", "720h0m0s", "modern"), "", 413},
	}
	before := certCount(t, v)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.post("/certificates", tt.form)
			if r.StatusCode != tt.status {
				t.Fatalf("status %d, want %d\n%s", r.StatusCode, tt.status, r.Body)
			}
			if tt.field != "" {
				if !bytes.Contains(r.Body, []byte(`id="issue-form"`)) {
					t.Error("form not shown again")
				}
				if !bytes.Contains(r.Body, []byte(`id="`+tt.field+`"`)) || !bytes.Contains(r.Body, []byte(`aria-invalid="true"`)) {
					t.Errorf("field %s not marked", tt.field)
				}
				if msg := extract(r.Body, `id="form-error">`, "</p>"); msg == "" {
					t.Error("no error message")
				}
			}
			if bytes.Contains(r.Body, []byte(long)) {
				t.Error("password echoed back")
			}
		})
	}
	if after := certCount(t, v); after != before {
		t.Fatalf("Vault issued %d certificates for bad input", after-before)
	}
}

func certCount(t *testing.T, v *testenv.Vault) int {
	t.Helper()
	return len(certSet(t, v))
}

// TestVaultFailures: a sealed Vault gives 503 and a failing /readyz; a Vault
// refusing the user's token gives 403 with a plain explanation.
func TestVaultFailures(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	if r := b.get("/readyz"); r.StatusCode != http.StatusOK {
		t.Fatalf("readyz before sealing: %d %s", r.StatusCode, r.Body)
	}

	t.Run("token revoked behind the portal's back", func(t *testing.T) {
		b2 := newBrowser(t, p.URL)
		before := accessors(t, v)
		b2.mustLogin("bob", v.Password(t, "bob"))
		for a := range accessors(t, v) {
			if !before[a] {
				if _, err := v.Admin.Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": a}); err != nil {
					t.Fatal(err)
				}
			}
		}
		r := b2.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern"))
		if r.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403", r.StatusCode)
		}
		if msg := extract(r.Body, `id="error-message">`, "<"); !strings.Contains(msg, "Vault refused") || strings.Contains(msg, "permission denied") {
			t.Fatalf("message %q", msg)
		}
	})

	t.Run("sealed", func(t *testing.T) {
		v.Seal(t)
		defer v.Unseal(t)
		r := b.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern"))
		if r.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("issue while sealed: %d", r.StatusCode)
		}
		if msg := extract(r.Body, `id="error-message">`, "<"); !strings.HasPrefix(msg, "Vault is unavailable; nothing was issued") {
			t.Fatalf("message %q", msg)
		}
		if r := b.get("/readyz"); r.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("readyz while sealed: %d", r.StatusCode)
		}
		if r := newBrowser(t, p.URL).post("/login", url.Values{"username": {"bob"}, "password": {v.Password(t, "bob")}}); r.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("login while sealed: %d", r.StatusCode)
		}
		if r := b.get("/healthz"); r.StatusCode != http.StatusOK {
			t.Fatalf("healthz must stay up: %d", r.StatusCode)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "http://" + ln.Addr().String()
		ln.Close()
		p2 := startPortal(t, &testenv.Vault{Addr: dead}, map[string]string{
			"CERTPORTAL_APPROLE_ROLE_ID": "unused", "CERTPORTAL_APPROLE_SECRET_ID": "unused"})
		r := newBrowser(t, p2.URL).post("/login", url.Values{"username": {"alice"}, "password": {"whatever-pass"}})
		if r.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("login with Vault down: %d", r.StatusCode)
		}
		if r := newBrowser(t, p2.URL).get("/readyz"); r.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("readyz with Vault down: %d", r.StatusCode)
		}
	})
	assertNoSecrets(t, p.Logs.String(), v.Password(t, "alice"), v.Password(t, "bob"), p12Password)
}

// selfSigned writes a certificate for 127.0.0.1 and returns its files and a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}
