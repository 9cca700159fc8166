package deploytest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/testenv"
)

// unitDirectives reads a unit file into directive → values (in order;
// directives may repeat).
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q is not key=value", path, line)
		}
		d[k] = append(d[k], v)
	}
	return d
}

// systemdAnalyze finds systemd-analyze; `make deps` installs Debian's
// systemd package when it is missing.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found: run `make deps` (installs Debian's systemd package)")
	}
	return p
}

// installUnits copies the units to a temporary directory with ExecStart
// pointing at a real certportal binary, since verify checks that it exists.
func installUnits(t *testing.T, names ...string) (string, []string) {
	t.Helper()
	root := testenv.RepoRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "certportal")
	data, err := os.ReadFile(staticBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", n))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "ExecStart=/usr/local/bin/certportal ") {
			t.Fatalf("%s: ExecStart does not run /usr/local/bin/certportal", n)
		}
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/certportal", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return dir, paths
}

// TestSystemdUnits runs systemd-analyze verify on both units (any warning
// fails: verify exits 0 on unknown directives), checks the hardening the
// portal's unit promises, and bounds `systemd-analyze security`'s exposure.
func TestSystemdUnits(t *testing.T) {
	analyze := systemdAnalyze(t)
	units := []string{"certportal.service", "certportal-nginx-certs.service"}
	dir, paths := installUnits(t, units...)
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, paths...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	d := unitDirectives(t, paths[0])
	want := map[string]string{
		"User":                    "certportal",
		"StateDirectory":          "certportal",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"MemoryDenyWriteExecute":  "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"UMask":                   "0077",
	}
	for k, v := range want {
		if got := d[k]; len(got) != 1 || got[0] != v {
			t.Errorf("certportal.service %s=%q, want %q", k, got, v)
		}
	}
	if f := d["SystemCallFilter"]; len(f) == 0 || f[0] != "@system-service" {
		t.Errorf("SystemCallFilter=%q, want @system-service first", f)
	}
	creds := strings.Join(d["LoadCredential"], " ")
	env := strings.Join(d["Environment"], " ")
	for _, c := range []struct{ cred, env string }{
		{"session-key:", "CERTPORTAL_SESSION_KEY_FILE=%d/session-key"},
		{"approle-secret-id:", "CERTPORTAL_APPROLE_SECRET_ID_FILE=%d/approle-secret-id"},
	} {
		if !strings.Contains(creds, c.cred) || !strings.Contains(env, c.env) {
			t.Errorf("certportal.service: want LoadCredential=%s… and Environment=%s; have %q / %q", c.cred, c.env, creds, env)
		}
	}
	if len(d["EnvironmentFile"]) != 1 {
		t.Errorf("certportal.service: want one EnvironmentFile=, have %q", d["EnvironmentFile"])
	}
	// Secrets stay out of the environment.
	for _, e := range d["Environment"] {
		if strings.HasPrefix(e, "CERTPORTAL_SESSION_KEY=") || strings.HasPrefix(e, "CERTPORTAL_APPROLE_SECRET_ID=") {
			t.Errorf("certportal.service puts a secret in Environment=: %s", e)
		}
	}
	// The portal has no reload signal; an ExecReload would claim one.
	if len(d["ExecReload"]) != 0 {
		t.Errorf("certportal.service has ExecReload=%q, but serve reads its settings only at start", d["ExecReload"])
	}
	w := unitDirectives(t, paths[1])
	if x := w["ExecStart"]; len(x) != 1 || !strings.Contains(x[0], " nginx-certs --watch ") {
		t.Errorf("certportal-nginx-certs.service ExecStart=%q, want nginx-certs --watch", x)
	}
	if c := w["CapabilityBoundingSet"]; len(c) != 1 || c[0] != "CAP_KILL" {
		t.Errorf("certportal-nginx-certs.service CapabilityBoundingSet=%q, want only CAP_KILL (to signal Nginx)", c)
	}

	// Exposure scores as `systemd-analyze security` rates them (0 best, 10
	// worst; its "OK" band ends at 4.9). Measured: 1.2 and 2.1.
	bounds := map[string]float64{"certportal.service": 1.5, "certportal-nginx-certs.service": 2.5}
	re := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)
	for i, p := range paths {
		cmd := exec.Command(analyze, "security", "--offline=yes", "--no-pager", p)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-analyze security --offline=yes %s: %v\n%s", units[i], err, out)
		}
		m := re.FindSubmatch(out)
		if m == nil {
			t.Fatalf("systemd-analyze security %s: no exposure level in\n%s", units[i], out)
		}
		score, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("%s exposure %.1f", units[i], score)
		if score > bounds[units[i]] {
			t.Errorf("%s exposure %.1f, want at most %.1f\n%s", units[i], score, bounds[units[i]], out)
		}
	}
}
