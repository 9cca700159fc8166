package nginxcerts_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/nginxtest"
)

// TestNomadJob renders the templates of deploy/nomad/certportal-nginx.nomad.hcl
// as Nomad would — consul-template's secret function against the real Vault,
// with a token holding only certportal-nginx — and runs the server block in
// real Nginx. The corrections the job claims are what make this pass: with
// the server certificate as client CA, or without the root's CRL, Nginx
// would refuse alice.
func TestNomadJob(t *testing.T) {
	bin := nginxtest.Binary(t)
	v := mustVault(t)
	upstream := newEchoUpstream(t)
	job := mustRead(t, filepath.Join(testenv.RepoRoot(t), "deploy", "nomad", "certportal-nginx.nomad.hcl"))
	tmpls := nomadTemplates(t, job, map[string]string{"server_name": "localhost", "upstream": upstream.URL})
	for _, dest := range []string{"secrets/server.pem", "secrets/server-key.pem", "secrets/client-ca.pem", "secrets/crl.pem", "local/certportal.conf"} {
		if _, ok := tmpls[dest]; !ok {
			t.Fatalf("job has no template for %s", dest)
		}
	}
	if !regexp.MustCompile(`destination\s*=\s*"secrets/server-key.pem"\s*\n\s*perms\s*=\s*"0600"`).Match(job) {
		t.Error("the key template does not set perms = \"0600\"")
	}

	dir := t.TempDir()
	render := func(t *testing.T, dest string) {
		t.Helper()
		var out bytes.Buffer
		if err := tmpls[dest].Execute(&out, nil); err != nil {
			t.Fatalf("render %s: %v", dest, err)
		}
		path := filepath.Join(dir, dest)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	secrets := map[string]*vaultapi.Secret{}
	for name, tmpl := range tmpls {
		tmpl.Funcs(template.FuncMap{"secret": consulSecret(v.nginx, secrets)})
		render(t, name)
	}

	// The docker driver mounts the task's secrets/ at /secrets; here it is dir/secrets.
	conf := string(mustRead(t, filepath.Join(dir, "local", "certportal.conf")))
	conf = strings.ReplaceAll(conf, "/secrets/", filepath.Join(dir, "secrets")+"/")
	addr := nginxtest.FreeAddr(t)
	if !strings.Contains(conf, "listen 443 ssl;") {
		t.Fatalf("server block does not listen on 443:\n%s", conf)
	}
	conf = strings.Replace(conf, "listen 443 ssl;", "listen "+addr+" ssl;", 1)
	n := startNginxServer(t, addr, []byte(conf))
	chain := mustCerts(t, mustRead(t, filepath.Join(dir, "secrets", "client-ca.pem")))
	if len(chain) != 2 {
		t.Fatalf("client CA holds %d certificates, want the issuing CA and the root", len(chain))
	}
	n.roots.AddCert(chain[1])

	p := mustPortal(t, v)
	alice := p.mustIssue(t, v, "alice")
	bob := p.mustIssue(t, v, "bob")
	mallory := mustForeignCert(t, "alice@example.com")
	check := func(t *testing.T, path string, cert *tls.Certificate, want int) string {
		t.Helper()
		status, body := n.get(t, path, cert, nil)
		if status != want {
			t.Fatalf("GET %s: status %d, want %d; body %q\n%s", path, status, want, body, n.Log.String())
		}
		return body
	}

	check(t, "/", nil, http.StatusOK)
	check(t, "/secure", nil, http.StatusForbidden)
	check(t, "/secure", &alice.tls, http.StatusOK)
	check(t, "/secure", &mallory, http.StatusBadRequest)
	if body := check(t, "/secure/whoami", &alice.tls, http.StatusOK); !strings.Contains(body, "serial: "+nginxSerial(alice.tls.Leaf)+"\n") {
		t.Errorf("whoami: %q", body)
	}
	// The protected prefix in another case, or moved out of it by dot
	// segments only nginx resolves, never reaches the upstream as /secure
	// without a certificate (review 81 F2).
	check(t, "/SECURE/app", nil, http.StatusNotFound)
	for _, p := range []string{"/secure/%2e%2e/app", "/secure/../app", "/secure%2F..%2Fapp"} {
		upstream.drain()
		n.get(t, p, nil, nil)
		select {
		case h := <-upstream.seen:
			if uri := h.Get("X-Test-Request-Uri"); strings.HasPrefix(strings.ToLower(uri), "/secure") && h.Get("X-Ssl-Client-Verify") != "SUCCESS" {
				t.Errorf("GET %s without a certificate reached the upstream as %q", p, uri)
			}
		default:
		}
	}
	upstream.drain()
	n.get(t, "/secure/app", &alice.tls, http.Header{"X-Ssl-Client-S-Dn": {"CN=admin@example.com"}})
	if got := upstream.next(t).Values("X-Ssl-Client-S-Dn"); len(got) != 1 || got[0] != "CN=alice@example.com,O=certportal" {
		t.Errorf("upstream got X-SSL-Client-S-DN %q", got)
	}

	// consul-template reads a secret without a lease again after a while; the
	// new CRL reaches Nginx with the SIGHUP its change_mode sends.
	check(t, "/secure", &bob.tls, http.StatusOK)
	if _, err := p.svc.RevokeOwn(context.Background(), bob.id, bob.dl.Serial, portal.UserReasons[0]); err != nil {
		t.Fatal(err)
	}
	fresh := map[string]*vaultapi.Secret{}
	tmpls["secrets/crl.pem"].Funcs(template.FuncMap{"secret": consulSecret(v.nginx, fresh)})
	render(t, "secrets/crl.pem")
	if out, err := exec.Command(bin, n.Args("-s", "reload")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -s reload: %v\n%s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, _ := n.get(t, "/secure", &bob.tls, nil)
		if status == http.StatusBadRequest {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked certificate still gets %d after the CRL template was rendered again\n%s", status, n.Log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	check(t, "/secure", &alice.tls, http.StatusOK)
}

// nomadTemplates parses the data heredoc of every template block in job,
// keyed by destination, with ${var.NAME} replaced as Nomad would.
func nomadTemplates(tb testing.TB, job []byte, vars map[string]string) map[string]*template.Template {
	tb.Helper()
	block := regexp.MustCompile(`(?s)template \{\n(.*?)\n\s*data\s*=\s*<<-EOT\n(.*?)\n[ \t]*EOT\n`)
	dest := regexp.MustCompile(`destination\s*=\s*"([^"]+)"`)
	out := map[string]*template.Template{}
	for _, m := range block.FindAllSubmatch(job, -1) {
		d := dest.FindSubmatch(m[1])
		if d == nil {
			tb.Fatalf("template block without destination:\n%s", m[1])
		}
		text := dedent(string(m[2]))
		for name, val := range vars {
			text = strings.ReplaceAll(text, "${var."+name+"}", val)
		}
		if strings.Contains(text, "${") || strings.Contains(text, "%{") {
			tb.Fatalf("template %s has an interpolation this test does not know:\n%s", d[1], text)
		}
		// consul-template fails on a missing key rather than writing "<no value>".
		t, err := template.New(string(d[1])).Option("missingkey=error").
			Funcs(template.FuncMap{"secret": func(string, ...string) (*vaultapi.Secret, error) { return nil, nil }}).
			Parse(text)
		if err != nil {
			tb.Fatalf("template %s: %v", d[1], err)
		}
		out[string(d[1])] = t
	}
	if len(out) == 0 {
		tb.Fatal("no template blocks found in the Nomad job")
	}
	return out
}

// dedent removes the indentation common to all non-blank lines, as HCL's <<- does.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	indent := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " \t"))
		if indent < 0 || n < indent {
			indent = n
		}
	}
	for i, l := range lines {
		if len(l) >= indent {
			lines[i] = l[indent:]
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// consulSecret is consul-template's secret function: a read without
// arguments, a write with key=value arguments, and one Vault call per
// distinct call within a render run — which is why the certificate and key
// templates must use identical arguments.
func consulSecret(c *vaultapi.Client, cache map[string]*vaultapi.Secret) func(string, ...string) (*vaultapi.Secret, error) {
	return func(path string, args ...string) (*vaultapi.Secret, error) {
		key := path + "\x00" + strings.Join(args, "\x00")
		if s, ok := cache[key]; ok {
			return s, nil
		}
		var s *vaultapi.Secret
		var err error
		if len(args) == 0 {
			s, err = c.Logical().Read(path)
		} else {
			data := map[string]any{}
			for _, a := range args {
				k, val, _ := strings.Cut(a, "=")
				data[k] = val
			}
			s, err = c.Logical().Write(path, data)
		}
		if err == nil && s == nil {
			err = os.ErrNotExist
		}
		if err != nil {
			return nil, err
		}
		cache[key] = s
		return s, nil
	}
}
