package nginxconf_test

import (
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/nginxconf"
	"github.com/certportal/certportal/internal/testenv/nginxtest"
)

// TestNginxHarnessCanFail shows nginx -t in this harness rejects a bad server block, so
// TestNginxAcceptsRenderedConfig passing means something.
func TestNginxHarnessCanFail(t *testing.T) {
	nginx := nginxtest.Binary(t)
	dir := t.TempDir()
	conf := nginxtest.MainConfig(t, dir, []byte("server {\n    listen 127.0.0.1:8443 ssl;\n    ssl_verify_client maybe;\n}\n"))
	out, err := exec.Command(nginx, nginxtest.Args(dir, conf, "-t")...).CombinedOutput()
	if err == nil {
		t.Fatalf("nginx -t accepted an invalid ssl_verify_client:\n%s", out)
	}
}

// runningNginx is an nginx master started by a test on a loopback port.
// runningNginx is nginx serving a rendered configuration with a test PKI's files.
type runningNginx struct {
	*nginxtest.Nginx
}

// startNginx renders p with pki's files on a free loopback port and runs nginx until the
// test ends.
func startNginx(tb testing.TB, pki *testPKI, p nginxconf.Params) *runningNginx {
	tb.Helper()
	p.ServerName = "app.test"
	p.Listen = nginxtest.FreeAddr(tb)
	p.ServerCert, p.ServerKey, p.ClientCA, p.CRL = pki.serverCert, pki.serverKey, pki.clientCA, pki.crl
	var server bytes.Buffer
	if err := nginxconf.Render(&server, p); err != nil {
		tb.Fatal(err)
	}
	return &runningNginx{nginxtest.Start(tb, p.Listen, server.Bytes())}
}

type response struct {
	status int
	body   string
}

// get fetches path presenting cert (nil for none), on a new connection.
func (n *runningNginx) get(tb testing.TB, pki *testPKI, path string, cert *tls.Certificate, header http.Header) response {
	tb.Helper()
	status, body := n.Get(tb, pki.serverPool, "app.test", path, cert, header)
	return response{status, body}
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%X", c.SerialNumber) }

func TestNginxEnforcesClientCertificates(t *testing.T) {
	pki := mustPKI(t)
	alice, aliceCert := mustClient(t, pki.issuing, "alice@example.com")
	bob, bobCert := mustClient(t, pki.issuing, "bob@example.com")
	otherCA := mustCA(t, "some other CA", nil)
	mallory, _ := mustClient(t, otherCA, "alice@example.com")
	expired, _ := mustClientUntil(t, pki.issuing, "alice@example.com", time.Now().Add(-time.Minute))

	n := startNginx(t, pki, nginxconf.Params{})

	check := func(t *testing.T, path string, cert *tls.Certificate, wantStatus int, wantBody ...string) {
		t.Helper()
		r := n.get(t, pki, path, cert, nil)
		if r.status != wantStatus {
			t.Fatalf("GET %s: status %d, want %d; body %q", path, r.status, wantStatus, r.body)
		}
		for _, w := range wantBody {
			if !strings.Contains(r.body, w) {
				t.Errorf("GET %s: body %q lacks %q", path, r.body, w)
			}
		}
	}

	t.Run("open location without certificate", func(t *testing.T) {
		check(t, "/", nil, http.StatusOK, "certportal-protected server")
	})
	t.Run("secure refuses no certificate", func(t *testing.T) {
		check(t, "/secure", nil, http.StatusForbidden)
		check(t, "/secure/page", nil, http.StatusForbidden)
		check(t, "/secure/whoami", nil, http.StatusForbidden)
	})
	t.Run("secure admits portal certificate", func(t *testing.T) {
		check(t, "/secure", &alice, http.StatusOK, "secure area: verified as CN=alice@example.com")
	})
	t.Run("whoami shows the certificate", func(t *testing.T) {
		check(t, "/secure/whoami", &alice, http.StatusOK,
			"subject: CN=alice@example.com\n", "serial: "+serialHex(aliceCert)+"\n", "verify: SUCCESS\n")
	})
	t.Run("secure refuses another CA", func(t *testing.T) {
		// With "optional", nginx answers a failed verification with 400 before any location runs.
		check(t, "/secure", &mallory, http.StatusBadRequest)
		check(t, "/secure/whoami", &mallory, http.StatusBadRequest)
		check(t, "/", &mallory, http.StatusBadRequest)
	})
	t.Run("secure refuses expired certificate", func(t *testing.T) {
		check(t, "/secure", &expired, http.StatusBadRequest)
	})
	t.Run("revoked after CRL refresh", func(t *testing.T) {
		check(t, "/secure", &bob, http.StatusOK)
		pki.revoke(t, bobCert)
		n.Reload(t)
		check(t, "/secure", &bob, http.StatusBadRequest)
		check(t, "/secure", &alice, http.StatusOK)
	})
}

func TestNginxVerifyOnRefusesEverywhere(t *testing.T) {
	pki := mustPKI(t)
	alice, _ := mustClient(t, pki.issuing, "alice@example.com")
	n := startNginx(t, pki, nginxconf.Params{Verify: nginxconf.VerifyOn, SecurePath: "/app/private"})
	for _, tc := range []struct {
		path   string
		cert   *tls.Certificate
		status int
	}{
		{"/", nil, http.StatusBadRequest},
		{"/app/private", nil, http.StatusBadRequest},
		{"/", &alice, http.StatusOK},
		{"/app/private", &alice, http.StatusOK},
		{"/app/private/whoami", &alice, http.StatusOK},
	} {
		if r := n.get(t, pki, tc.path, tc.cert, nil); r.status != tc.status {
			t.Errorf("GET %s (certificate %v): status %d, want %d", tc.path, tc.cert != nil, r.status, tc.status)
		}
	}
}

func TestNginxUpstreamGetsVerifiedIdentity(t *testing.T) {
	pki := mustPKI(t)
	alice, aliceCert := mustClient(t, pki.issuing, "alice@example.com")

	seen := make(chan http.Header, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		fmt.Fprintf(w, "upstream %s", r.URL.Path)
	}))
	t.Cleanup(upstream.Close)

	n := startNginx(t, pki, nginxconf.Params{Upstream: upstream.URL})
	forged := http.Header{
		"X-Ssl-Client-Verify":      {"SUCCESS"},
		"X-Ssl-Client-S-Dn":        {"CN=admin@example.com"},
		"X-Ssl-Client-Serial":      {"01"},
		"X-Ssl-Client-Fingerprint": {"00"},
		"X-Forwarded-For":          {"10.9.9.9"},
	}
	fingerprint := func(c *x509.Certificate) string {
		return fmt.Sprintf("%x", sha1.Sum(c.Raw))
	}

	t.Run("forged headers without certificate never reach the secure upstream", func(t *testing.T) {
		if r := n.get(t, pki, "/secure/x", nil, forged); r.status != http.StatusForbidden {
			t.Fatalf("status %d, want 403", r.status)
		}
		select {
		case h := <-seen:
			t.Fatalf("upstream was reached: %v", h)
		default:
		}
	})
	t.Run("forged headers on the open location are replaced", func(t *testing.T) {
		r := n.get(t, pki, "/", nil, forged)
		if r.status != http.StatusOK || r.body != "upstream /" {
			t.Fatalf("GET /: %d %q", r.status, r.body)
		}
		h := <-seen
		if got := h.Values("X-Ssl-Client-Verify"); len(got) != 1 || got[0] != "NONE" {
			t.Errorf("X-SSL-Client-Verify = %q, want [NONE]", got)
		}
		// nginx sends no header for an empty value, and still drops the client's.
		for _, name := range []string{"X-Ssl-Client-S-Dn", "X-Ssl-Client-Serial", "X-Ssl-Client-Fingerprint"} {
			if got := h.Values(name); len(got) != 0 {
				t.Errorf("%s = %q, want none", name, got)
			}
		}
		if got := h.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want [127.0.0.1]", got)
		}
	})
	t.Run("secure upstream gets the verified identity despite forged headers", func(t *testing.T) {
		r := n.get(t, pki, "/secure/x", &alice, forged)
		if r.status != http.StatusOK || r.body != "upstream /secure/x" {
			t.Fatalf("GET /secure/x: %d %q", r.status, r.body)
		}
		h := <-seen
		want := map[string]string{
			"X-Ssl-Client-Verify":      "SUCCESS",
			"X-Ssl-Client-S-Dn":        "CN=alice@example.com",
			"X-Ssl-Client-Serial":      serialHex(aliceCert),
			"X-Ssl-Client-Fingerprint": fingerprint(aliceCert),
		}
		for name, v := range want {
			if got := h.Values(name); len(got) != 1 || got[0] != v {
				t.Errorf("%s = %q, want [%s]", name, got, v)
			}
		}
	})
	t.Run("whoami is answered by nginx", func(t *testing.T) {
		r := n.get(t, pki, "/secure/whoami", &alice, nil)
		if r.status != http.StatusOK || !strings.Contains(r.body, "subject: CN=alice@example.com\n") {
			t.Fatalf("GET /secure/whoami: %d %q", r.status, r.body)
		}
		select {
		case h := <-seen:
			t.Fatalf("whoami reached the upstream: %v", h)
		default:
		}
	})
}

// TestNginxCRLPitfalls pins the nginx behaviour docs/nginx.md warns about: the CRL file
// must cover every CA in the client CA chain and must not expire, or nginx refuses
// every certificate, revoked or not.
func TestNginxCRLPitfalls(t *testing.T) {
	tests := []struct {
		name    string
		crl     func(pki *testPKI) [][]byte
		wantLog string
	}{
		{"issuing CA's CRL only", func(pki *testPKI) [][]byte {
			return [][]byte{pemBlock("X509 CRL", mustCRL(t, pki.issuing, nil))}
		}, "unable to get certificate CRL"},
		{"expired CRL", func(pki *testPKI) [][]byte {
			past := time.Now().Add(-time.Minute)
			return [][]byte{
				pemBlock("X509 CRL", mustCRLUntil(t, pki.issuing, nil, past)),
				pemBlock("X509 CRL", mustCRL(t, pki.root, nil)),
			}
		}, "CRL has expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pki := mustPKI(t)
			alice, _ := mustClient(t, pki.issuing, "alice@example.com")
			mustWrite(t, pki.crl, tt.crl(pki)...)
			n := startNginx(t, pki, nginxconf.Params{})
			if r := n.get(t, pki, "/secure", &alice, nil); r.status != http.StatusBadRequest {
				t.Fatalf("GET /secure with a valid certificate: status %d, want 400", r.status)
			}
			if !n.LogContains(tt.wantLog) {
				t.Errorf("nginx log lacks %q:\n%s", tt.wantLog, n.Log.String())
			}
		})
	}
}

// TestNginxFriendlyCertificatePages: a revoked, expired or foreign certificate,
// and a missing one, get a page that says what happened and links to the
// portal — not nginx's bare "400 Bad Request" — with verify optional and on.
func TestNginxFriendlyCertificatePages(t *testing.T) {
	const portal = "https://certs.example.com/"
	pki := mustPKI(t)
	alice, _ := mustClient(t, pki.issuing, "alice@example.com")
	bob, bobCert := mustClient(t, pki.issuing, "bob@example.com")
	expired, _ := mustClientUntil(t, pki.issuing, "alice@example.com", time.Now().Add(-time.Minute))
	mallory, _ := mustClient(t, mustCA(t, "some other CA", nil), "alice@example.com")
	pki.revoke(t, bobCert)

	invalid := []string{"Your certificate is no longer valid", `href="` + portal + `"`, "인증서가 더 이상 유효하지 않습니다"}
	missing := []string{"This page needs your company certificate", `href="` + portal + `"`}
	for _, verify := range []string{nginxconf.VerifyOptional, nginxconf.VerifyOn} {
		t.Run(verify, func(t *testing.T) {
			n := startNginx(t, pki, nginxconf.Params{Verify: verify, PortalURL: portal})
			cases := []struct {
				name   string
				path   string
				cert   *tls.Certificate
				status int
				want   []string
			}{
				{"revoked", "/secure", &bob, http.StatusBadRequest, invalid},
				{"revoked whoami", "/secure/whoami", &bob, http.StatusBadRequest, invalid},
				{"expired", "/secure/page", &expired, http.StatusBadRequest, invalid},
				{"another CA", "/", &mallory, http.StatusBadRequest, invalid},
			}
			if verify == nginxconf.VerifyOptional {
				cases = append(cases, struct {
					name   string
					path   string
					cert   *tls.Certificate
					status int
					want   []string
				}{"none", "/secure/whoami", nil, http.StatusForbidden, missing})
			} else {
				cases = append(cases, struct {
					name   string
					path   string
					cert   *tls.Certificate
					status int
					want   []string
				}{"none", "/secure", nil, http.StatusBadRequest, missing})
			}
			for _, tc := range cases {
				r := n.get(t, pki, tc.path, tc.cert, nil)
				if r.status != tc.status {
					t.Errorf("%s: GET %s: status %d, want %d; body %q", tc.name, tc.path, r.status, tc.status, r.body)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.body, w) {
						t.Errorf("%s: GET %s: body lacks %q:\n%s", tc.name, tc.path, w, r.body)
					}
				}
			}
			// A valid certificate still gets the whoami page, with the portal named.
			r := n.get(t, pki, "/secure/whoami", &alice, nil)
			if r.status != http.StatusOK || !strings.Contains(r.body, "verify: SUCCESS") || !strings.Contains(r.body, portal) {
				t.Errorf("whoami with a valid certificate: %d %q", r.status, r.body)
			}
		})
	}
}
