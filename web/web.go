// Package web holds certportal's HTML templates and static assets, embedded in
// the binary so a deployment is one file.
package web

import "embed"

// Templates are the page templates; internal/ui parses them once at start-up.
//
//go:embed templates/*.html
var Templates embed.FS

// Static is served under /static/.
//
//go:embed static
var Static embed.FS

// Wasm is the device-key WebAssembly module, its gzipped copy and Go's
// wasm_exec.js, written by `make wasm` (part of make build) and not
// committed: a binary built without that step has only the README and
// offers no device keys (internal/ui).
//
//go:embed wasm
var Wasm embed.FS
