package nginxcerts_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/nginxcerts"
	"github.com/certportal/certportal/internal/nginxconf"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv/nginxtest"
	"github.com/certportal/certportal/internal/vault"
)

// TestNginxEndToEnd closes the loop the portal exists for: Vault and setup,
// nginx-certs writing Nginx's files, a rendered configuration, Debian's real
// Nginx, and certificates from the portal's own .p12 downloads.
func TestNginxEndToEnd(t *testing.T) {
	nginxBin := nginxtest.Binary(t)
	v := mustVault(t)
	certDir := t.TempDir()
	cfg := testConfig(certDir)
	mustSync(t, v.nginx, cfg, time.Now())

	upstream := newEchoUpstream(t)
	n := startNginx(t, nginxconf.Params{
		ServerName: "localhost",
		ServerCert: filepath.Join(certDir, nginxcerts.ServerCertFile),
		ServerKey:  filepath.Join(certDir, nginxcerts.ServerKeyFile),
		ClientCA:   filepath.Join(certDir, nginxcerts.ClientCAFile),
		CRL:        filepath.Join(certDir, nginxcerts.CRLFile),
		Verify:     nginxconf.VerifyOptional,
		Upstream:   upstream.URL,
	})
	// Clients trust Nginx through the same root the portal's chain ends in.
	caChain := mustCerts(t, mustRead(t, filepath.Join(certDir, nginxcerts.ClientCAFile)))
	n.roots.AddCert(caChain[len(caChain)-1])

	p := mustPortal(t, v)
	aliceP := p.mustIssue(t, v, "alice")
	bobP := p.mustIssue(t, v, "bob")
	alice, bob := aliceP.tls, bobP.tls
	mallory := mustForeignCert(t, "alice@example.com")
	serverAsClient, err := tls.LoadX509KeyPair(filepath.Join(certDir, nginxcerts.ServerCertFile), filepath.Join(certDir, nginxcerts.ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T, path string, cert *tls.Certificate, want int) string {
		t.Helper()
		status, body := n.get(t, path, cert, nil)
		if status != want {
			t.Fatalf("GET %s: status %d, want %d; body %q", path, status, want, body)
		}
		return body
	}

	t.Run("open path answers without a certificate", func(t *testing.T) {
		check(t, "/", nil, http.StatusOK)
	})
	t.Run("secure path refuses a request without a certificate", func(t *testing.T) {
		check(t, "/secure", nil, http.StatusForbidden)
		check(t, "/secure/whoami", nil, http.StatusForbidden)
	})
	t.Run("another spelling of the secure path reaches nothing", func(t *testing.T) {
		// A case-insensitive backend would serve /SECURE as /secure: it must
		// not get there through the open location.
		for _, path := range []string{"/SECURE", "/Secure/app", "/sEcUrE/whoami", "/%53ecure", "/%C5%BFecure", "/%C5%BFECURE/app"} {
			check(t, path, nil, http.StatusNotFound)
			check(t, path, &alice, http.StatusNotFound)
		}
	})
	t.Run("secure path admits the portal's certificate", func(t *testing.T) {
		check(t, "/secure", &alice, http.StatusOK)
	})
	t.Run("certificate from another CA is refused", func(t *testing.T) {
		check(t, "/secure", &mallory, http.StatusBadRequest)
	})
	t.Run("Nginx's own server certificate is no client certificate", func(t *testing.T) {
		// Same CA as the users' certificates, but the server role leaves out
		// clientAuth, and OpenSSL checks the purpose.
		check(t, "/secure", &serverAsClient, http.StatusBadRequest)
	})
	t.Run("whoami shows the subject and serial", func(t *testing.T) {
		body := check(t, "/secure/whoami", &alice, http.StatusOK)
		serial := strings.ToUpper(strings.ReplaceAll(aliceP.dl.Serial, ":", ""))
		for _, want := range []string{
			"subject: CN=alice@example.com,O=certportal\n",
			"serial: " + serial + "\n",
			"verify: SUCCESS\n",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("whoami %q lacks %q", body, want)
			}
		}
		if serial != nginxSerial(alice.Leaf) {
			t.Errorf("portal serial %s, certificate serial %s", serial, nginxSerial(alice.Leaf))
		}
	})
	t.Run("upstream receives the verified identity, not the client's headers", func(t *testing.T) {
		forged := http.Header{
			"X-Ssl-Client-Verify": {"SUCCESS"},
			"X-Ssl-Client-S-Dn":   {"CN=admin@example.com"},
			"X-Ssl-Client-Serial": {"01"},
		}
		upstream.drain()
		_, body := n.get(t, "/", nil, forged)
		h := upstream.next(t)
		if got := h.Values("X-Ssl-Client-Verify"); len(got) != 1 || got[0] != "NONE" {
			t.Errorf("without a certificate upstream got X-SSL-Client-Verify %q, want [NONE]; body %q", got, body)
		}
		if got := h.Values("X-Ssl-Client-S-Dn"); len(got) != 0 {
			t.Errorf("without a certificate upstream got X-SSL-Client-S-DN %q, want none", got)
		}

		upstream.drain()
		if status, body := n.get(t, "/secure/app", &alice, forged); status != http.StatusOK {
			t.Fatalf("GET /secure/app: %d %q", status, body)
		}
		h = upstream.next(t)
		want := map[string]string{
			"X-Ssl-Client-Verify":      "SUCCESS",
			"X-Ssl-Client-S-Dn":        "CN=alice@example.com,O=certportal",
			"X-Ssl-Client-Serial":      nginxSerial(alice.Leaf),
			"X-Ssl-Client-Fingerprint": fmt.Sprintf("%x", sha1.Sum(alice.Leaf.Raw)),
		}
		for name, w := range want {
			if got := h.Values(name); len(got) != 1 || got[0] != w {
				t.Errorf("upstream got %s %q, want [%s]", name, got, w)
			}
		}
	})
	t.Run("revoked certificate is refused once nginx-certs refreshed the CRL", func(t *testing.T) {
		check(t, "/secure", &bob, http.StatusOK)
		// bob reports his certificate lost and revokes it in the portal.
		if _, err := p.svc.RevokeOwn(context.Background(), bobP.id, bobP.dl.Serial, portal.UserReasons[0]); err != nil {
			t.Fatalf("revoke in the portal: %v", err)
		}
		// Nginx only knows what its CRL file says: until the refresh, the
		// revoked certificate still works. docs/nginx.md calls this the
		// revocation delay.
		check(t, "/secure", &bob, http.StatusOK)

		reloaded := make(chan struct{}, 10)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- nginxcerts.Watch(ctx, v.nginx, cfg, nginxcerts.WatchOptions{
				CRLInterval: 300 * time.Millisecond,
				Reload: func(ctx context.Context) error {
					// What --reload-cmd "nginx -s reload" does, with this test's paths.
					out, err := exec.CommandContext(ctx, nginxBin, n.Args("-s", "reload")...).CombinedOutput()
					if err != nil {
						return fmt.Errorf("nginx -s reload: %v: %s", err, out)
					}
					reloaded <- struct{}{}
					return nil
				},
				Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
		}()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Watch: %v", err)
			}
		}()
		select {
		case <-reloaded:
		case <-time.After(20 * time.Second):
			t.Fatal("nginx-certs --watch did not reload Nginx after the revocation")
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			status, _ := n.get(t, "/secure", &bob, nil)
			if status == http.StatusBadRequest {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("revoked certificate still gets %d after the reload\n%s", status, n.Log.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !n.LogContains("certificate revoked") {
			t.Errorf("Nginx did not log the revocation as the reason:\n%s", n.Log.String())
		}
		check(t, "/secure", &alice, http.StatusOK)
		select {
		case <-reloaded:
			t.Error("reloaded again although nothing changed")
		case <-time.After(time.Second):
		}
	})
}

// testPortal is the portal's own service, wired as `certportal serve` wires
// it: the users' Vault tokens for issuance, its AppRole identity for
// revocation, a SQLite inventory and audit trail.
type testPortal struct {
	svc *portal.Service
}

func mustPortal(tb testing.TB, v *testVault) *testPortal {
	tb.Helper()
	cfg := config.Default()
	cfg.VaultAddr = v.Addr
	cfg.AppRoleRoleID, cfg.AppRoleSecretID = v.Setup.ServiceRoleID, v.Setup.ServiceSecretID
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	vc, err := vault.New(vault.Config{Addr: v.Addr})
	if err != nil {
		tb.Fatal(err)
	}
	ident, err := vc.NewService(vault.AppRole{RoleID: cfg.AppRoleRoleID, SecretID: cfg.AppRoleSecretID}, log)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "certportal.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return &testPortal{svc: portal.NewService(vc, ident, st, app.PortalOptions(cfg), log)}
}

// portalCert is what a user got from the portal, decoded as a browser would.
type portalCert struct {
	tls tls.Certificate
	dl  *portal.Download
	id  *portal.Identity
}

// mustIssue runs the portal's flow for user — login with the Vault password,
// issuance with the user's own token, .p12 download — and decodes the file.
func (p *testPortal) mustIssue(tb testing.TB, v *testVault, user string) portalCert {
	tb.Helper()
	ctx := context.Background()
	id, _, err := p.svc.Login(ctx, user, v.Password(tb, user))
	if err != nil {
		tb.Fatalf("portal login %s: %v", user, err)
	}
	const pw = "correct horse battery staple"
	dl, err := p.svc.Issue(ctx, id, portal.IssueRequest{Password: pw, PasswordConfirm: pw, TTL: "24h0m0s", Encryption: "modern"})
	if err != nil {
		tb.Fatalf("portal issue for %s: %v", user, err)
	}
	key, leaf, cas, err := pkcs12.DecodeChain(dl.Data, pw)
	if err != nil {
		tb.Fatalf("decode .p12: %v", err)
	}
	chain := [][]byte{leaf.Raw}
	for _, ca := range cas {
		chain = append(chain, ca.Raw)
	}
	return portalCert{tls: tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, dl: dl, id: id}
}

// mustForeignCert makes a client certificate for cn from a CA Nginx does not
// trust: what an attacker with their own CA would present.
func mustForeignCert(tb testing.TB, cn string) tls.Certificate {
	tb.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "certportal Issuing CA", Organization: []string{"certportal"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn, Organization: []string{"certportal"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key, Leaf: leaf}
}

// nginxSerial is $ssl_client_serial: the serial's bytes in upper-case hex.
func nginxSerial(c *x509.Certificate) string {
	return strings.ToUpper(hex.EncodeToString(c.SerialNumber.Bytes()))
}

// echoUpstream is the application behind Nginx: it answers with the headers
// it received and keeps them for the test.
type echoUpstream struct {
	*httptest.Server
	seen chan http.Header
}

func newEchoUpstream(tb testing.TB) *echoUpstream {
	tb.Helper()
	u := &echoUpstream{seen: make(chan http.Header, 16)}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var names []string
		for k := range r.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Fprintf(w, "%s: %s\n", k, strings.Join(r.Header.Values(k), ", "))
		}
		h := r.Header.Clone()
		h.Set("X-Test-Request-Uri", r.RequestURI) // the path as the upstream got it, for the tests
		u.seen <- h
	}))
	tb.Cleanup(u.Close)
	return u
}

// drain forgets the requests received so far.
func (u *echoUpstream) drain() {
	for {
		select {
		case <-u.seen:
		default:
			return
		}
	}
}

// next returns the headers of the next request the upstream receives.
func (u *echoUpstream) next(tb testing.TB) http.Header {
	tb.Helper()
	select {
	case h := <-u.seen:
		return h
	case <-time.After(5 * time.Second):
		tb.Fatal("the upstream received no request")
		return nil
	}
}

// testNginx is nginx on a loopback port whose server certificate chains to roots.
type testNginx struct {
	*nginxtest.Nginx
	roots *x509.CertPool
}

// startNginx renders p on a free loopback port and runs it with startNginxServer.
func startNginx(tb testing.TB, p nginxconf.Params) *testNginx {
	tb.Helper()
	p.Listen = nginxtest.FreeAddr(tb)
	var server bytes.Buffer
	if err := nginxconf.Render(&server, p); err != nil {
		tb.Fatal(err)
	}
	return startNginxServer(tb, p.Listen, server.Bytes())
}

// startNginxServer runs the server block listening on addr until the test ends.
func startNginxServer(tb testing.TB, addr string, server []byte) *testNginx {
	tb.Helper()
	return &testNginx{Nginx: nginxtest.Start(tb, addr, server), roots: x509.NewCertPool()}
}

// get fetches path over a new connection presenting cert (nil: none).
func (n *testNginx) get(tb testing.TB, path string, cert *tls.Certificate, header http.Header) (int, string) {
	tb.Helper()
	return n.Get(tb, n.roots, "localhost", path, cert, header)
}
