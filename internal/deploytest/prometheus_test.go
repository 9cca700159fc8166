package deploytest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/nginxtest"
	"github.com/certportal/certportal/internal/testenv/syncbuf"
	"github.com/certportal/certportal/internal/vault"
)

// Files under test, relative to the repository root.
const (
	rulesFile     = "deploy/prometheus/certportal-rules.yml"
	rulesTestFile = "deploy/prometheus/certportal-rules.test.yml"
	dashboardFile = "deploy/grafana/certportal.json"
)

// pendingMetrics are names the rules use that another part of certportal
// is still to export; each is accepted only while nothing exports it, so
// once it exists it is checked like every other name.
var pendingMetrics = []string{}

// promtool finds Debian's promtool; `make deps` installs the prometheus
// package when it is missing.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: run `make deps` (installs Debian's prometheus package)")
	}
	return p
}

// TestAlertRules: promtool accepts the rules and passes their unit tests,
// and every alert has a unit test in which it fires and one in which it
// stays quiet, so an alert added without its tests fails here.
func TestAlertRules(t *testing.T) {
	root := testenv.RepoRoot(t)
	tool := promtool(t)
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTestFile}} {
		cmd := exec.Command(tool, args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	alerts := ruleAlerts(t, filepath.Join(root, rulesFile))
	if len(alerts) < 9 {
		t.Fatalf("%d alerts in %s: %v", len(alerts), rulesFile, alerts)
	}
	fires, quiet := ruleTestCases(t, filepath.Join(root, rulesTestFile))
	for _, a := range alerts {
		if !fires[a] {
			t.Errorf("alert %s has no unit test in which it fires", a)
		}
		if !quiet[a] {
			t.Errorf("alert %s has no unit test in which it stays quiet", a)
		}
	}
}

var alertLine = regexp.MustCompile(`^\s*- alert:\s*(\S+)\s*$`)

// ruleAlerts lists the alert names of a rule file.
func ruleAlerts(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if m := alertLine.FindStringSubmatch(l); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// ruleTestCases reads which alerts the unit tests expect to fire (an
// exp_alerts list with entries) and to stay quiet (exp_alerts: []).
func ruleTestCases(t *testing.T, path string) (fires, quiet map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fires, quiet = map[string]bool{}, map[string]bool{}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		name, ok := strings.CutPrefix(strings.TrimSpace(l), "alertname:")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		for _, next := range lines[i+1:] {
			next = strings.TrimSpace(next)
			if next == "" || strings.HasPrefix(next, "#") {
				continue
			}
			switch {
			case strings.HasPrefix(next, "exp_alerts: []"):
				quiet[name] = true
			case next == "exp_alerts:":
				fires[name] = true
			default:
				t.Fatalf("%s: alertname %s is not followed by exp_alerts", path, name)
			}
			break
		}
	}
	return fires, quiet
}

// promServer is a Prometheus server the test started.
type promServer struct {
	t    *testing.T
	base string
	logs *syncbuf.Buffer
}

// startPrometheus runs Debian's prometheus on a loopback port with its
// data in a temporary directory, scraping targets (job -> address) every
// second and evaluating the rules as often.
func startPrometheus(t *testing.T, rules string, targets map[string]string) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus not found: run `make deps` (installs Debian's prometheus package)")
	}
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - %q\nscrape_configs:\n", rules)
	jobs := make([]string, 0, len(targets))
	for j := range targets {
		jobs = append(jobs, j)
	}
	sort.Strings(jobs)
	for _, j := range jobs {
		fmt.Fprintf(&cfg, "  - job_name: %q\n    static_configs:\n      - targets: [%q]\n", j, targets[j])
	}
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := nginxtest.FreeAddr(t)
	p := &promServer{t: t, base: "http://" + addr, logs: &syncbuf.Buffer{}}
	cmd := exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	p.waitFor("Prometheus ready", 60*time.Second, func() (bool, string) {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

// waitFor polls cond until it holds; last says why it did not.
func (p *promServer) waitFor(what string, timeout time.Duration, cond func() (ok bool, last string)) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: not within %s; last: %s\nprometheus log:\n%s", what, timeout, last, p.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// api GETs a Prometheus HTTP API path and decodes its data.
func (p *promServer) api(path string, params url.Values, data any) error {
	resp, err := http.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, b)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s", path, env.Error)
	}
	return json.Unmarshal(env.Data, data)
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant query that must return a vector.
func (p *promServer) query(q string) ([]promSample, error) {
	var d struct {
		ResultType string       `json:"resultType"`
		Result     []promSample `json:"result"`
	}
	if err := p.api("/api/v1/query", url.Values{"query": {q}}, &d); err != nil {
		return nil, err
	}
	if d.ResultType != "vector" {
		return nil, fmt.Errorf("%s: result type %s, want vector", q, d.ResultType)
	}
	return d.Result, nil
}

// value is the one sample's value of q, as a string ("" when there is none).
func (p *promServer) value(q string) string {
	r, err := p.query(q)
	if err != nil || len(r) != 1 {
		return ""
	}
	s, _ := r[0].Value[1].(string)
	return s
}

// dashboardQueries lists every panel query of the Grafana dashboard.
func dashboardQueries(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	return out
}

var metricName = regexp.MustCompile(`\b(?:certportal|go|process)_[a-zA-Z0-9_]+\b`)

// TestPrometheusScrapesPortal starts a real Prometheus scraping a running
// portal (devvault, certificates issued and revoked, reminders on) and a
// running nginx-certs --watch, with the alert rules loaded: every query of
// the Grafana dashboard returns data, every metric a rule or panel names is
// one the programs export, the rules evaluate without error, the
// certificate gauges show what was issued, and promtool accepts both
// /metrics pages.
func TestPrometheusScrapesPortal(t *testing.T) {
	root := testenv.RepoRoot(t)
	tool := promtool(t)
	bin := staticBinary(t)
	v := testenv.StartConfiguredVault(t)

	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(hook.Close)
	env := v.PortalEnv()
	env["CERTPORTAL_DB"] = filepath.Join(t.TempDir(), "certportal.db")
	env["CERTPORTAL_METRICS_INTERVAL"] = "1s"
	env["CERTPORTAL_NOTIFY_WEBHOOK"] = hook.URL
	env["CERTPORTAL_PUBLIC_URL"] = "https://certs.example.com"
	portal := startReplica(t, bin, "portal", env)

	// Certificates, so the series exist: alice has one active and one
	// revoked, bob one that expires within a day with no successor.
	alice := newLBClient(t, "http://"+portal.addr)
	alice.login("alice", v.Password(t, "alice"))
	issueTTL(t, alice, "720h0m0s")
	revoked := issueTTL(t, alice, "720h0m0s")
	if code, body, err := alice.post("/certificates/"+revoked+"/revoke", url.Values{"reason": {"lost"}}, ""); err != nil || code != http.StatusSeeOther {
		t.Fatalf("revoke: %d %v\n%s", code, err, body)
	}
	bob := newLBClient(t, "http://"+portal.addr)
	bob.login("bob", v.Password(t, "bob"))
	issueTTL(t, bob, "24h0m0s")

	watcher := startNginxCerts(t, bin, v)

	p := startPrometheus(t, filepath.Join(root, rulesFile), map[string]string{"certportal": portal.addr, "nginx-certs": watcher})
	p.waitFor("both targets up", 60*time.Second, func() (bool, string) {
		r, err := p.query(`up`)
		if err != nil {
			return false, err.Error()
		}
		up := 0
		for _, s := range r {
			if s.Value[1] == "1" {
				up++
			}
		}
		return up == 2, fmt.Sprint(r)
	})

	// The gauges show the inventory as the database counts it.
	for q, want := range map[string]string{
		`certportal_certificates{job="certportal",status="active"}`:                  "2",
		`certportal_certificates{job="certportal",status="revoked"}`:                 "1",
		`certportal_certificates{job="certportal",status="expired"}`:                 "0",
		`certportal_certificates_expiring{job="certportal",within="1d"}`:             "1",
		`certportal_certificates_expiring{job="certportal",within="30d"}`:            "2",
		`certportal_certificates_issued_total{job="certportal",encryption="modern"}`: "3",
		`certportal_certificates_revoked_total{job="certportal",reason="lost"}`:      "1",
		`certportal_offboard_held{job="certportal"}`:                                 "0",
	} {
		p.waitFor(q+" = "+want, 60*time.Second, func() (bool, string) {
			got := p.value(q)
			return got == want, got
		})
	}
	// Bob's certificate expires in under a day: the next expiry is within
	// it, and the unrenewed-expiry alert is pending on real data.
	p.waitFor("next expiry within a day", 30*time.Second, func() (bool, string) {
		got := p.value(`certportal_certificates_next_expiry_timestamp_seconds - time()`)
		f, err := strconv.ParseFloat(got, 64)
		return err == nil && f > 0 && f <= 86400, got
	})
	p.waitFor("CertportalCertificatesExpiringUnrenewed pending", 60*time.Second, func() (bool, string) {
		got := p.value(`ALERTS{alertname="CertportalCertificatesExpiringUnrenewed",alertstate="pending",job="certportal"}`)
		return got == "1", got
	})

	// Every dashboard query returns data (some series), once enough
	// scrapes are in for rate() over the window.
	exprs := dashboardQueries(t, filepath.Join(root, dashboardFile))
	if len(exprs) < 15 {
		t.Fatalf("%d dashboard queries", len(exprs))
	}
	subst := strings.NewReplacer(`$nginx_job`, "nginx-certs", `$job`, "certportal", `$__rate_interval`, "15s")
	for _, e := range exprs {
		q := subst.Replace(e)
		if strings.Contains(q, "$") {
			t.Errorf("dashboard query %q uses a variable the test does not know", e)
			continue
		}
		p.waitFor("dashboard query "+q, 60*time.Second, func() (bool, string) {
			r, err := p.query(q)
			if err != nil {
				return false, err.Error()
			}
			return len(r) > 0, "no series"
		})
	}

	// The rules load and evaluate without error, and are the ones the
	// unit tests cover.
	var rules struct {
		Groups []struct {
			Rules []struct {
				Name           string `json:"name"`
				Query          string `json:"query"`
				Type           string `json:"type"`
				Health         string `json:"health"`
				LastError      string `json:"lastError"`
				LastEvaluation string `json:"lastEvaluation"`
			} `json:"rules"`
		} `json:"groups"`
	}
	var ruleQueries, ruleNames []string
	p.waitFor("every rule evaluated", 30*time.Second, func() (bool, string) {
		if err := p.api("/api/v1/rules", nil, &rules); err != nil {
			return false, err.Error()
		}
		ruleQueries, ruleNames = nil, nil
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				if r.Health != "ok" {
					return false, fmt.Sprintf("%s: health %s %s", r.Name, r.Health, r.LastError)
				}
				ruleQueries = append(ruleQueries, r.Query)
				ruleNames = append(ruleNames, r.Name)
			}
		}
		return len(ruleNames) > 0, "no rules loaded"
	})
	if want := ruleAlerts(t, filepath.Join(root, rulesFile)); !slices.Equal(ruleNames, want) {
		t.Errorf("Prometheus loaded alerts %v, the file has %v", ruleNames, want)
	}

	// Every metric a rule or a panel names is exported by the portal or
	// the watcher: a misspelt name cannot hide behind a query that is
	// merely empty.
	var names []string
	if err := p.api("/api/v1/label/__name__/values", nil, &names); err != nil {
		t.Fatal(err)
	}
	for _, e := range append(ruleQueries, exprs...) {
		for _, n := range metricName.FindAllString(e, -1) {
			if !slices.Contains(names, n) && !slices.Contains(pendingMetrics, n) {
				t.Errorf("%s (in %q) is not exported by the portal or nginx-certs", n, e)
			}
		}
	}

	// promtool's linter accepts what both programs serve.
	for _, target := range []string{portal.addr, watcher} {
		resp, err := http.Get("http://" + target + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cmd := exec.Command(tool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on %s: %v\n%s", target, err, out)
		}
	}
}

// issueTTL asks for a certificate of the given validity and returns its serial.
func issueTTL(t *testing.T, c *lbClient, ttl string) string {
	t.Helper()
	form := url.Values{"password": {p12Password}, "password_confirm": {p12Password}, "ttl": {ttl}, "encryption": {"modern"}}
	code, body, err := c.post("/certificates", form, "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("issue %s: %d %v\n%.500s", ttl, code, err, body)
	}
	_, cert, _, err := pkcs12.DecodeChain(body, p12Password)
	if err != nil {
		t.Fatalf("download is not the .p12: %v", err)
	}
	return vault.FormatSerial(cert.SerialNumber.Bytes())
}

// startNginxCerts runs `certportal nginx-certs --watch` with its metrics
// listener and returns the listener's address once it serves the expiry
// of the files it wrote.
func startNginxCerts(t *testing.T, bin string, v *testenv.Vault) string {
	t.Helper()
	o := setup.Defaults()
	o.ServerIPSANs = []string{"127.0.0.1"}
	if _, err := setup.EnsureServerRole(context.Background(), v.Admin, o, setup.DefaultServerRole, []string{setup.DefaultServerNames}); err != nil {
		t.Fatal(err)
	}
	tok, err := v.Admin.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{setup.NginxPolicyName}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	addr := nginxtest.FreeAddr(t)
	logs := &syncbuf.Buffer{}
	cmd := exec.Command(bin, "nginx-certs", "--out-dir", t.TempDir(), "--server-name", "localhost", "--watch", "--crl-interval", "5s")
	cmd.Env = []string{"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=" + tok.Auth.ClientToken, "CERTPORTAL_NGINX_METRICS_LISTEN=" + addr}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
			sc := bufio.NewScanner(resp.Body)
			found := false
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "certportal_nginx_crl_next_update_timestamp_seconds ") {
					found = true
				}
			}
			resp.Body.Close()
			if found {
				return addr
			}
		}
		select {
		case <-exited:
			t.Fatalf("nginx-certs --watch exited:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx-certs --watch served no expiry metrics within 60s:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
