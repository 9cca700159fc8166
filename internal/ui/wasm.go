package ui

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/certportal/certportal/web"
)

// deviceAssets are the device-key WebAssembly module and Go's loader for
// it, served under names holding their content hash: a new build is a
// new name, so both may be cached for a year. The module is also kept
// gzipped (make build writes devicekey.wasm.gz): 6 MB raw, under 2 MB on
// the wire.
type deviceAssets struct {
	wasm, wasmGz, exec []byte
	wasmName, execName string
}

// ErrNoDeviceModule: the binary was built without `make build`'s
// WebAssembly step (web/wasm is empty).
var ErrNoDeviceModule = errors.New("ui: this binary has no device-key WebAssembly module (build it with make build)")

func loadDeviceAssets() (*deviceAssets, error) {
	wasm, err := fs.ReadFile(web.Wasm, "wasm/devicekey.wasm")
	if err != nil {
		return nil, ErrNoDeviceModule
	}
	exec, err := fs.ReadFile(web.Wasm, "wasm/wasm_exec.js")
	if err != nil {
		return nil, ErrNoDeviceModule
	}
	gz, _ := fs.ReadFile(web.Wasm, "wasm/devicekey.wasm.gz")
	return &deviceAssets{wasm: wasm, wasmGz: gz, exec: exec,
		wasmName: "devicekey." + contentHash(wasm) + ".wasm", execName: "wasm_exec." + contentHash(exec) + ".js"}, nil
}

func contentHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// URLs the page loads the module from.
func (a *deviceAssets) wasmURL() string { return "/static/wasm/" + a.wasmName }
func (a *deviceAssets) execURL() string { return "/static/wasm/" + a.execName }

// serveDeviceAsset serves the two files by their hashed names only.
func (s *Server) serveDeviceAsset(w http.ResponseWriter, r *http.Request) {
	a := s.device
	name := chi.URLParam(r, "name")
	var body []byte
	h := w.Header()
	switch {
	case a == nil:
		s.failStatus(w, r, http.StatusNotFound, "error.not_found")
		return
	case name == a.wasmName:
		h.Set("Content-Type", "application/wasm")
		h.Set("Vary", "Accept-Encoding")
		body = a.wasm
		if a.wasmGz != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			body = a.wasmGz
		}
	case name == a.execName:
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		body = a.exec
	default:
		s.failStatus(w, r, http.StatusNotFound, "error.not_found")
		return
	}
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// pageScriptFile is the page script in web/static.
const pageScriptFile = "portal.js"

// pageScript is web/static/portal.js, served as portal.<hash>.js with a
// year's cache: a page always loads the script of its own build, never a
// copy an older build left in the browser's cache.
type pageScript struct {
	body []byte
	name string
}

func loadPageScript() (*pageScript, error) {
	b, err := fs.ReadFile(web.Static, "static/"+pageScriptFile)
	if err != nil {
		return nil, fmt.Errorf("ui: page script: %w", err)
	}
	return &pageScript{body: b, name: "portal." + contentHash(b) + ".js"}, nil
}

func (p *pageScript) url() string { return "/static/" + p.name }

func (s *Server) serveScript(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("Content-Length", strconv.Itoa(len(s.script.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(s.script.body)
	}
}

// acceptsGzip reads Accept-Encoding well enough for browsers: gzip listed
// and not refused with q=0.
func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") {
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
