package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/testenv"
)

var deviceWasmRe = regexp.MustCompile(`data-wasm="(/static/wasm/devicekey\.[0-9a-f]{16}\.wasm)" data-wasm-exec="(/static/wasm/wasm_exec\.[0-9a-f]{16}\.js)"`)

// keyOriginHiddenRe: the device-key choice, hidden until the page script
// shows it, whatever other attributes the fieldset has.
var keyOriginHiddenRe = regexp.MustCompile(`<fieldset id="key-origin"[^>]* hidden[ >]`)

// TestDeviceKeyModuleServed: the issue form offers the device key (hidden
// until the page script shows it), the module and its loader are served
// under content-hashed names, cached for a year, the module gzipped (under
// 3 MB) to browsers that accept it, and the CSP lets the page compile it
// and nothing else new. With device keys off the form does not offer it.
func TestDeviceKeyModuleServed(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "web", "wasm", "devicekey.wasm"))
	if err != nil {
		t.Fatalf("no device-key module in web/wasm (run make build, which runs make wasm): %v", err)
	}
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	home := alice.get("/")
	m := deviceWasmRe.FindSubmatch(home.Body)
	if m == nil || !keyOriginHiddenRe.Match(home.Body) {
		t.Fatalf("no device-key choice on the form:\n%s", home.Body)
	}
	if csp := home.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self' 'wasm-unsafe-eval';") {
		t.Errorf("CSP %q", csp)
	}
	plain := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	get := func(path, enc string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, p.URL+path, nil)
		if enc != "" {
			req.Header.Set("Accept-Encoding", enc)
		}
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, gz := get(string(m[1]), "gzip, deflate, br")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Content-Type") != "application/wasm" ||
		resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Fatalf("module: %d %v", resp.StatusCode, resp.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	unz, _ := io.ReadAll(zr)
	if !bytes.Equal(unz, raw) {
		t.Error("gzipped module differs from web/wasm/devicekey.wasm")
	}
	if len(gz) >= 3<<20 {
		t.Errorf("module is %d bytes gzipped, want under 3 MB", len(gz))
	}
	t.Logf("devicekey.wasm: %d bytes raw, %d gzipped", len(raw), len(gz))
	if resp, b := get(string(m[1]), ""); resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(b, raw) {
		t.Error("module without gzip: not the raw file")
	}
	if resp, b := get(string(m[2]), ""); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || !bytes.Contains(b, []byte("globalThis.Go = class")) {
		t.Errorf("wasm_exec.js: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, bad := range []string{"/static/wasm/devicekey.wasm", "/static/wasm/devicekey.0000000000000000.wasm", "/static/wasm/README.md"} {
		if resp, _ := get(bad, ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d", bad, resp.StatusCode)
		}
	}

	off := startPortal(t, v, map[string]string{"CERTPORTAL_DEVICE_KEYS": "off"})
	bob := newBrowser(t, off.URL)
	bob.mustLogin("bob", v.Password(t, "bob"))
	if r := bob.get("/"); bytes.Contains(r.Body, []byte("key-origin")) {
		t.Error("device-key choice offered with device keys off")
	}
}

var pageScriptRe = regexp.MustCompile(`<script src="(/static/portal\.([0-9a-f]{16})\.js)" defer></script>`)

// TestPageScriptHashed: every page loads the page script by a name holding
// its content hash (the first 8 bytes of its SHA-256), served with a year's
// immutable cache, so a browser never runs a copy older than the page (one
// that posts the CSR without the encryption, say); the unhashed name is
// never cached without asking again, and a hash that is not the script's is
// not found. The CSP is unchanged.
func TestPageScriptHashed(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "web", "static", "portal.js"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	login := alice.get("/login")
	m := pageScriptRe.FindSubmatch(login.Body)
	if m == nil || bytes.Contains(login.Body, []byte(`"/static/portal.js"`)) {
		t.Fatalf("login page does not load the hashed script:\n%s", login.Body)
	}
	if string(m[2]) != hex.EncodeToString(sum[:8]) {
		t.Errorf("script name %s, want the hash of web/static/portal.js %x", m[1], sum[:8])
	}
	if csp := login.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self';") {
		t.Errorf("CSP %q", csp)
	}
	alice.mustLogin("alice", v.Password(t, "alice"))
	if home := alice.get("/"); !bytes.Contains(home.Body, m[0]) {
		t.Errorf("dashboard does not load %s", m[1])
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequest(method, p.URL+string(m[1]), nil)
		r := alice.do(req)
		if r.StatusCode != http.StatusOK || r.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" ||
			r.Header.Get("Content-Type") != "text/javascript; charset=utf-8" || r.Header.Get("Content-Length") != strconv.Itoa(len(src)) {
			t.Errorf("%s %s: %d %v", method, m[1], r.StatusCode, r.Header)
		}
		if method == http.MethodGet && !bytes.Equal(r.Body, src) {
			t.Errorf("GET %s: not web/static/portal.js", m[1])
		}
	}
	r := alice.get("/static/portal.js")
	if cc := r.Header.Get("Cache-Control"); r.StatusCode != http.StatusOK || cc != "no-cache" {
		t.Errorf("/static/portal.js: %d, Cache-Control %q, want no-cache", r.StatusCode, cc)
	}
	if r := alice.get("/static/portal.0000000000000000.js"); r.StatusCode != http.StatusNotFound {
		t.Errorf("script under another hash: %d", r.StatusCode)
	}
}

// TestIssueFormKeepsKeyOrigin: a form sent with "let the server create it"
// and refused (passwords differ) comes back with that choice, not the
// device default; an untouched form still defaults to the device.
func TestIssueFormKeepsKeyOrigin(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	if home := string(alice.get("/").Body); !strings.Contains(home, `id="key-device" checked`) || strings.Contains(home, `id="key-server" checked`) {
		t.Fatalf("fresh form does not default to the device:\n%s", home)
	}
	form := issueForm("correct horse battery", "other horse battery", "", "modern")
	form.Set("key_origin", "server")
	r := alice.post("/certificates", form)
	if r.StatusCode != http.StatusBadRequest {
		t.Fatalf("mismatched passwords: status %d", r.StatusCode)
	}
	if body := string(r.Body); !strings.Contains(body, `id="key-server" checked`) || strings.Contains(body, `id="key-device" checked`) {
		t.Errorf("refused form forgot the server key choice:\n%s", body)
	}
}

// TestCSPWasmOnlyWhereOffered: only a page whose issue form offers "create
// the key on this device" (the dashboard, the renew form) may compile
// WebAssembly; every other page, the error pages, the helpdesk's on-behalf
// form (the key is made on the server), static files and a portal with
// device keys off get the CSP without 'wasm-unsafe-eval'.
func TestCSPWasmOnlyWhereOffered(t *testing.T) {
	if _, err := os.Stat(filepath.Join(testenv.RepoRoot(t), "web", "wasm", "devicekey.wasm")); err != nil {
		t.Fatalf("no device-key module in web/wasm (run make build, which runs make wasm): %v", err)
	}
	const wasm = "'wasm-unsafe-eval'"
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	check := func(who, path string, r *response, want bool) {
		t.Helper()
		csp := r.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s %s: CSP %q lost its base", who, path, csp)
		}
		if got := strings.Contains(csp, wasm); got != want {
			t.Errorf("%s %s (status %d): CSP %q, want wasm-unsafe-eval %v", who, path, r.StatusCode, csp, want)
		}
		if want && !deviceWasmRe.Match(r.Body) {
			t.Errorf("%s %s: CSP allows WebAssembly but the page loads no module", who, path)
		}
	}
	anon := newBrowser(t, p.URL)
	for _, path := range []string{"/login", "/no-such-page", "/ca.pem", "/static/style.css", "/healthz"} {
		check("anonymous", path, anon.get(path), false)
	}
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	check("alice", "/", alice.get("/"), true)
	serial := alice.issue("modern")
	check("alice", "renew", alice.get("/certificates/"+serial+"/renew"), true)
	check("alice", "revoke form", alice.get("/certificates/"+serial+"/revoke"), false)
	check("alice", "/helpdesk (403)", alice.get("/helpdesk"), false)
	check("alice", "/logout form", alice.get("/logout"), false)

	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	check("helen", "/helpdesk/users/alice", helen.get("/helpdesk/users/alice"), false)

	off := startPortal(t, v, map[string]string{"CERTPORTAL_DEVICE_KEYS": "off"})
	bob := newBrowser(t, off.URL)
	bob.mustLogin("bob", v.Password(t, "bob"))
	check("bob, device keys off", "/", bob.get("/"), false)
}
