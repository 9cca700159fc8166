package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/nginxcerts"
	"github.com/certportal/certportal/internal/nginxconf"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/nginxtest"
)

// TestWhoamiRoundTrip: a certificate downloaded through the portal is
// presented to Debian's nginx running the rendered template; the serial its
// whoami page shows, pasted exactly as shown, finds the certificate in the
// helpdesk search, the audit filter and export, and revokes it in the portal; once nginx has the
// new CRL the same certificate gets the "no longer valid" page linking to
// the portal.
func TestWhoamiRoundTrip(t *testing.T) {
	ctx := context.Background()
	v := testenv.StartConfiguredVault(t)
	nginxVault, cfg := syncNginxCerts(t, v)
	certDir := cfg.Dir

	p := startPortal(t, v, map[string]string{"CERTPORTAL_SERVICE_URL": "https://localhost/"})
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	form := issueForm(p12Password, p12Password, "24h", "modern")
	form.Set("label", "round trip")
	r := alice.post("/certificates", form)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("issue: %d %s", r.StatusCode, r.Body)
	}
	key, leaf, chain, err := pkcs12.DecodeChain(r.Body, p12Password)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	portalSerial := r.Header.Get("X-Certificate-Serial")

	portalURL := p.URL + "/"
	params := nginxconf.Params{ServerName: "localhost", Listen: nginxtest.FreeAddr(t), PortalURL: portalURL,
		ServerCert: filepath.Join(certDir, nginxcerts.ServerCertFile), ServerKey: filepath.Join(certDir, nginxcerts.ServerKeyFile),
		ClientCA: filepath.Join(certDir, nginxcerts.ClientCAFile), CRL: filepath.Join(certDir, nginxcerts.CRLFile)}
	var conf bytes.Buffer
	if err := nginxconf.Render(&conf, params); err != nil {
		t.Fatal(err)
	}
	n := nginxtest.Start(t, params.Listen, conf.Bytes())
	roots := x509.NewCertPool()
	caChain := readPEMCerts(t, params.ClientCA)
	roots.AddCert(caChain[len(caChain)-1])

	status, body := n.Get(t, roots, "localhost", "/secure/whoami", &cert, nil)
	if status != http.StatusOK {
		t.Fatalf("whoami: %d %q", status, body)
	}
	shown := field(body, "serial")
	if shown == "" || !strings.Contains(body, "subject: CN=alice@example.com") || !strings.Contains(body, portalURL) {
		t.Fatalf("whoami page:\n%s", body)
	}
	t.Logf("whoami shows serial %q; the portal's form is %q", shown, portalSerial)

	// Helpdesk staff paste what whoami shows into their search.
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	// The page may offer line breaks between the pairs (<wbr>): compare the text.
	if hd := helen.get("/helpdesk?q=" + url.QueryEscape(shown)); hd.StatusCode != http.StatusOK ||
		!strings.Contains(strings.ReplaceAll(string(hd.Body), "<wbr>", ""), portalSerial) || !strings.Contains(string(hd.Body), "/helpdesk/users/alice") {
		t.Errorf("helpdesk search for whoami's serial %q: %d\n%s", shown, hd.StatusCode, hd.Body)
	}

	// The auditor pastes what whoami shows.
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	page := audrey.get("/audit?serial=" + url.QueryEscape(shown))
	if page.StatusCode != http.StatusOK || !strings.Contains(string(page.Body), "round trip") {
		t.Errorf("audit filter with whoami's serial %q: %d\n%s", shown, page.StatusCode, page.Body)
	}
	export := audrey.get("/audit/export?format=jsonl&serial=" + url.QueryEscape(shown))
	lines := strings.Split(strings.TrimSpace(string(export.Body)), "\n")
	if export.StatusCode != http.StatusOK || len(lines) < 2 {
		t.Fatalf("audit export with whoami's serial: %d %q", export.StatusCode, export.Body)
	}
	for _, l := range lines {
		if !strings.Contains(l, `"serial":"`+portalSerial+`"`) {
			t.Errorf("export line for another serial: %s", l)
		}
	}
	if !strings.Contains(string(export.Body), `"label":"round trip"`) {
		t.Errorf("the issue event's details lack the label:\n%s", export.Body)
	}

	// The employee revokes by the serial as whoami shows it.
	rv := alice.post("/certificates/"+shown+"/revoke", url.Values{"reason": {"lost"}})
	if rv.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke by whoami's serial %q: %d\n%s", shown, rv.StatusCode, rv.Body)
	}
	// nginx-certs picks the new CRL up when a refresh is due; ask as of
	// shortly before the current CRL's next update.
	crl := readCRLNextUpdate(t, params.CRL)
	if _, err := nginxcerts.Sync(ctx, nginxVault, cfg, crl.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(n.Bin, n.Args("-s", "reload")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -s reload: %v %s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, body = n.Get(t, roots, "localhost", "/secure/whoami", &cert, nil)
		if status == http.StatusBadRequest {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked certificate still gets %d after the reload", status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(body, "Your certificate is no longer valid") || !strings.Contains(body, `href="`+portalURL+`"`) {
		t.Errorf("revoked certificate's page:\n%s", body)
	}
}

// field returns the value of a "name: value" line.
func field(body, name string) string {
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func readPEMCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// readCRLNextUpdate is the earliest next update of the CRLs in path.
func readCRLNextUpdate(t *testing.T, path string) time.Time {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var next time.Time
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		crl, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if next.IsZero() || crl.NextUpdate.Before(next) {
			next = crl.NextUpdate
		}
	}
	if next.IsZero() {
		t.Fatal("no CRL with a next update")
	}
	return next
}
