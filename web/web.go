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
