package nginxconf_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/nginxconf"
	"github.com/certportal/certportal/internal/testenv/nginxtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/nginx")

const goldenDir = "../../testdata/nginx"

// mustFiles writes four placeholder files, for tests about validation rather than
// about what nginx makes of the contents.
func mustFiles(tb testing.TB) nginxconf.Params {
	tb.Helper()
	dir := tb.TempDir()
	p := nginxconf.Params{ServerName: "app.example.com"}
	for _, f := range []struct {
		dst  *string
		name string
	}{{&p.ServerCert, "server.pem"}, {&p.ServerKey, "server-key.pem"}, {&p.ClientCA, "ca.pem"}, {&p.CRL, "crl.pem"}} {
		*f.dst = filepath.Join(dir, f.name)
		mustWrite(tb, *f.dst, []byte("placeholder\n"))
	}
	return p
}

func TestValidate(t *testing.T) {
	valid := mustFiles(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name    string
		edit    func(p *nginxconf.Params)
		wantErr string // substring; empty means valid
	}{
		{"defaults", func(p *nginxconf.Params) {}, ""},
		{"everything set", func(p *nginxconf.Params) {
			p.Listen, p.SecurePath, p.Verify, p.Upstream = "127.0.0.1:8443", "/app/private", "on", "https://127.0.0.1:9443"
		}, ""},
		{"ipv6 listen", func(p *nginxconf.Params) { p.Listen = "[::1]:443" }, ""},
		{"wildcard listen", func(p *nginxconf.Params) { p.Listen = "*:443" }, ""},
		{"host name listen", func(p *nginxconf.Params) { p.Listen = "localhost:8443" }, ""},
		{"wildcard server name", func(p *nginxconf.Params) { p.ServerName = "*.example.com" }, ""},
		{"catch-all server name", func(p *nginxconf.Params) { p.ServerName = "_" }, ""},
		{"upstream with slash", func(p *nginxconf.Params) { p.Upstream = "http://127.0.0.1:9000/" }, ""},
		{"unchecked missing files", func(p *nginxconf.Params) {
			p.ServerCert, p.ServerKey, p.ClientCA, p.CRL = missing, missing, missing, missing
			p.SkipFileChecks = true
		}, ""},

		{"no server name", func(p *nginxconf.Params) { p.ServerName = "" }, "server name is required"},
		{"server name with space", func(p *nginxconf.Params) { p.ServerName = "a.example.com b.example.com" }, `server name "a.example.com b.example.com": must be one host name`},
		{"server name with quote", func(p *nginxconf.Params) { p.ServerName = `app"` }, "must be one host name"},
		{"server name with semicolon", func(p *nginxconf.Params) { p.ServerName = "app;evil" }, "must be one host name"},
		{"server name with brace", func(p *nginxconf.Params) { p.ServerName = "app}" }, "must be one host name"},
		{"regex server name", func(p *nginxconf.Params) { p.ServerName = `~^app\d+$` }, "must be one host name"},
		{"wildcard inside", func(p *nginxconf.Params) { p.ServerName = "app.*.com" }, "a wildcard must be a whole first or last label"},

		{"listen zero", func(p *nginxconf.Params) { p.Listen = "0" }, `listen "0": port must be a number from 1 to 65535`},
		{"listen too high", func(p *nginxconf.Params) { p.Listen = "65536" }, "port must be a number from 1 to 65535"},
		{"listen name only", func(p *nginxconf.Params) { p.Listen = "localhost" }, "must be a port or host:port"},
		{"listen no host", func(p *nginxconf.Params) { p.Listen = ":443" }, "host must be"},
		{"listen bare ipv6", func(p *nginxconf.Params) { p.Listen = "::1:443" }, "must be a port or host:port"},
		{"listen with options", func(p *nginxconf.Params) { p.Listen = "443 default_server" }, "must be a port or host:port"},
		{"listen semicolon", func(p *nginxconf.Params) { p.Listen = "a;b:443" }, "host must be"},

		{"no server cert", func(p *nginxconf.Params) { p.ServerCert = "" }, "server certificate: path is required"},
		{"relative key", func(p *nginxconf.Params) { p.ServerKey = "server-key.pem" }, `server key: path "server-key.pem" must be absolute`},
		{"missing client CA", func(p *nginxconf.Params) { p.ClientCA = missing }, "client CA: cannot read: open " + missing},
		{"directory as CRL", func(p *nginxconf.Params) { p.CRL = dir }, "CRL: " + dir + " is not a regular file"},
		{"path with semicolon", func(p *nginxconf.Params) { p.ServerCert = "/etc/a;b.pem"; p.SkipFileChecks = true }, "must not contain whitespace"},
		{"path with variable", func(p *nginxconf.Params) { p.ServerCert = "/etc/$ssl_server_name.pem"; p.SkipFileChecks = true }, "must not contain whitespace"},
		{"path with space", func(p *nginxconf.Params) { p.CRL = "/etc/my crl.pem"; p.SkipFileChecks = true }, "must not contain whitespace"},
		{"path with newline", func(p *nginxconf.Params) { p.CRL = "/etc/crl.pem\n"; p.SkipFileChecks = true }, "must not contain whitespace"},

		{"secure path relative", func(p *nginxconf.Params) { p.SecurePath = "secure" }, `secure path "secure": must start with /`},
		{"secure path root", func(p *nginxconf.Params) { p.SecurePath = "/" }, "must not be the whole site"},
		{"secure path trailing slash", func(p *nginxconf.Params) { p.SecurePath = "/secure/" }, "no trailing slash"},
		{"secure path double slash", func(p *nginxconf.Params) { p.SecurePath = "//secure" }, "must start with /"},
		{"secure path dot dot", func(p *nginxconf.Params) { p.SecurePath = "/a/../secure" }, "must start with /"},
		{"secure path brace", func(p *nginxconf.Params) { p.SecurePath = "/secure{" }, "must start with /"},
		{"secure path regex", func(p *nginxconf.Params) { p.SecurePath = "~ ^/secure" }, "must start with /"},

		{"verify off", func(p *nginxconf.Params) { p.Verify = "off" }, `verify "off": must be "optional" or "on"`},
		{"verify optional_no_ca", func(p *nginxconf.Params) { p.Verify = "optional_no_ca" }, "must be"},
		{"verify upper case", func(p *nginxconf.Params) { p.Verify = "ON" }, "must be"},

		{"upstream scheme", func(p *nginxconf.Params) { p.Upstream = "ftp://127.0.0.1" }, `upstream "ftp://127.0.0.1": scheme must be http or https`},
		{"upstream no scheme", func(p *nginxconf.Params) { p.Upstream = "127.0.0.1:9000" }, "upstream"},
		{"upstream no host", func(p *nginxconf.Params) { p.Upstream = "http://" }, "must name a host"},
		{"upstream credentials", func(p *nginxconf.Params) { p.Upstream = "http://u:p@127.0.0.1" }, "must not carry credentials"},
		{"upstream path", func(p *nginxconf.Params) { p.Upstream = "http://127.0.0.1:9000/app" }, "without a path"},
		{"upstream query", func(p *nginxconf.Params) { p.Upstream = "http://127.0.0.1:9000?a=b" }, "without a path"},
		{"upstream injection", func(p *nginxconf.Params) { p.Upstream = "http://127.0.0.1:9000; return 200" }, "must not contain whitespace"},
		{"upstream quote", func(p *nginxconf.Params) { p.Upstream = `http://127.0.0.1:9000"` }, "must not contain whitespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := valid
			tt.edit(&p)
			err := p.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := nginxconf.Params{ServerName: "a b", Verify: "maybe"}.Validate()
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	for _, want := range []string{"server name", "server certificate", "server key", "client CA", "CRL", "verify"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, missing %q", err, want)
		}
	}
}

func TestRenderWritesNothingOnError(t *testing.T) {
	p := mustFiles(t)
	p.ServerName = `app" ; return 200 "owned`
	var out bytes.Buffer
	if err := nginxconf.Render(&out, p); err == nil {
		t.Fatal("Render() = nil, want error")
	}
	if out.Len() != 0 {
		t.Fatalf("Render wrote %d bytes on error:\n%s", out.Len(), out.String())
	}
}

// goldenCases pin the template output. Paths are fixed so the files read the same on
// every machine; TestNginxAcceptsRenderedConfig swaps in real files.
var goldenCases = []struct {
	name string
	p    nginxconf.Params
}{
	{"optional", nginxconf.Params{}},
	{"optional-upstream", nginxconf.Params{Upstream: "http://127.0.0.1:9000"}},
	{"on-upstream", nginxconf.Params{
		Listen: "127.0.0.1:8443", SecurePath: "/app/private", Verify: "on", Upstream: "https://127.0.0.1:9443/",
	}},
	{"on", nginxconf.Params{Listen: "[::1]:443", Verify: "on"}},
}

func goldenParams(p nginxconf.Params) nginxconf.Params {
	p.ServerName = "app.example.com"
	p.ServerCert = "/etc/nginx/certportal/server.pem"
	p.ServerKey = "/etc/nginx/certportal/server-key.pem"
	p.ClientCA = "/etc/nginx/certportal/client-ca.pem"
	p.CRL = "/etc/nginx/certportal/crl.pem"
	p.SkipFileChecks = true
	return p
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			var got bytes.Buffer
			if err := nginxconf.Render(&got, goldenParams(tc.p)); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(goldenDir, tc.name+".conf")
			if *update {
				if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/nginxconf -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("rendered config differs from %s (run with -update if the change is intended):\n%s", path, got.String())
			}
		})
	}
}

// TestRenderedSecurityLines guards the lines whose loss would open the secure path,
// independently of the golden files, which -update rewrites wholesale.
func TestRenderedSecurityLines(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			p := goldenParams(tc.p)
			var b bytes.Buffer
			if err := nginxconf.Render(&b, p); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			verify := p.Verify
			if verify == "" {
				verify = "optional"
			}
			want := []string{
				"ssl_client_certificate " + p.ClientCA + ";",
				"ssl_verify_client " + verify + ";",
				"ssl_verify_depth 2;",
				"ssl_crl " + p.CRL + ";",
				"ssl_session_tickets off;",
				"location = " + p.WhoamiPath() + " {",
			}
			if p.Upstream != "" {
				for _, h := range []string{"Verify $ssl_client_verify", "S-DN $ssl_client_s_dn", "Serial $ssl_client_serial", "Fingerprint $ssl_client_fingerprint"} {
					name, value, _ := strings.Cut(h, " ")
					want = append(want, fmt.Sprintf("proxy_set_header X-SSL-Client-%-11s %s;", name, value))
				}
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("rendered config lacks %q", w)
				}
			}
			// The secure location and whoami must each refuse unverified requests.
			if n := strings.Count(out, "if ($ssl_client_verify != SUCCESS) {\n            return 403;"); n != 2 {
				t.Errorf("found %d 403 guards, want 2", n)
			}
			if n, want := strings.Count(out, "proxy_pass "), map[bool]int{true: 2, false: 0}[p.Upstream != ""]; n != want {
				t.Errorf("found %d proxy_pass, want %d", n, want)
			}
			if n, want := strings.Count(out, "proxy_set_header X-SSL-Client-Verify"), strings.Count(out, "proxy_pass "); n != want {
				t.Errorf("%d proxied locations but %d set X-SSL-Client-Verify", want, n)
			}
		})
	}
}

func TestNginxAcceptsRenderedConfig(t *testing.T) {
	nginx := nginxtest.Binary(t)
	pki := mustPKI(t)
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			p.ServerName = "app.test"
			p.ServerCert, p.ServerKey, p.ClientCA, p.CRL = pki.serverCert, pki.serverKey, pki.clientCA, pki.crl
			var server bytes.Buffer
			if err := nginxconf.Render(&server, p); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			conf := nginxtest.MainConfig(t, dir, server.Bytes())
			out, err := exec.Command(nginx, nginxtest.Args(dir, conf, "-t")...).CombinedOutput()
			if err != nil {
				t.Fatalf("nginx -t: %v\n%s\nserver block:\n%s", err, out, server.String())
			}
			if !strings.Contains(string(out), "test is successful") {
				t.Fatalf("nginx -t did not report success:\n%s", out)
			}
		})
	}
}

// TestSecurePathPatternFolds: the open location's check matches the
// protected prefix in any case a backend may fold to it, ASCII or not.
func TestSecurePathPatternFolds(t *testing.T) {
	for path, want := range map[string]string{
		"/secure":    `/(?:s|\xC5\xBF)ecure`,
		"/Kiosk.app": `/(?:K|\xE2\x84\xAA)(?:i|\xC4\xB1|\xC4\xB0)o(?:s|\xC5\xBF)(?:k|\xE2\x84\xAA)\.app`,
		"/a-b_c~9":   `/a-b_c~9`,
	} {
		if got := (nginxconf.Params{SecurePath: path}).SecurePathPattern(); got != want {
			t.Errorf("SecurePathPattern(%q) = %s, want %s", path, got, want)
		}
	}
}
