package ui

import (
	"html"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/store"
)

// TestReconcilePageStates: what the reconciliation page says of the newest
// run, in English and Korean: its progress only once it is known (never
// "0 of 0"), that one is starting, that the first one runs, and a run whose
// replica stopped as cut off, with the start button back. While one runs
// there is a refresh link and no start button. (The page with a real run
// held at Vault's list: TestReconcileRunningPage in cmd/certportal.)
func TestReconcilePageStates(t *testing.T) {
	s, _ := mustErrorServer(t, panickingStore{}) // /readyz is not asked
	started := time.Date(2026, 12, 3, 9, 30, 0, 0, time.UTC)
	done := &store.ReconcileRun{ID: 1, By: "audrey", State: store.RunDone, StartedAt: started.Add(-time.Hour), FinishedAt: started.Add(-50 * time.Minute)}
	running := func(toRead, read int) *store.ReconcileRun {
		return &store.ReconcileRun{ID: 2, By: "audrey", State: store.RunRunning, StartedAt: started, ToRead: toRead, Read: read}
	}
	for _, lang := range i18n.Supported {
		when := started.Format("2006-01-02 15:04:05 UTC") // the "datetime" function's form
		for _, tc := range []struct {
			name    string
			st      *portal.ReconcileStatus
			running string // the running line, "" for none (the start button instead)
			also    []string
		}{
			{"progress known", &portal.ReconcileStatus{Latest: running(10, 3), LastDone: done, Active: true},
				i18n.T(lang, "audit.reconcile_running", when, 3, 10), nil},
			{"listing Vault", &portal.ReconcileStatus{Latest: running(0, 0), LastDone: done, Active: true},
				i18n.T(lang, "audit.reconcile_running_started", when), nil},
			{"asked for, not started", &portal.ReconcileStatus{Latest: done, LastDone: done, Active: true},
				i18n.T(lang, "audit.reconcile_queued"), nil},
			{"the first run", &portal.ReconcileStatus{Latest: running(0, 0), Active: true},
				i18n.T(lang, "audit.reconcile_running_started", when) + " " + i18n.T(lang, "audit.reconcile_first"), nil},
			{"its replica stopped", &portal.ReconcileStatus{Latest: running(10, 3), LastDone: done, Stale: true}, "",
				[]string{i18n.T(lang, "audit.reconcile_failed", when, i18n.T(lang, "error.reconcile_interrupted"))}},
			{"never run", &portal.ReconcileStatus{}, "", []string{i18n.T(lang, "audit.reconcile_never")}},
		} {
			t.Run(string(lang)+"/"+tc.name, func(t *testing.T) {
				r := httptest.NewRequest("GET", "/audit/reconcile?lang="+string(lang), nil)
				p := s.newPage(r, "audit.reconcile")
				p.ReconcileStatus = tc.st
				rec := httptest.NewRecorder()
				s.render(rec, r, 200, "audit_reconcile", p)
				body := rec.Body.String()
				line := ""
				if i := strings.Index(body, `id="reconcile-running" role="status">`); i >= 0 {
					line = body[i+len(`id="reconcile-running" role="status">`):]
					line = html.UnescapeString(line[:strings.Index(line, "</p>")])
				}
				if line != tc.running {
					t.Errorf("running line %q, want %q", line, tc.running)
				}
				if tc.running != "" {
					if strings.Contains(body, `id="reconcile-start"`) || !strings.Contains(body, `id="reconcile-refresh"`) {
						t.Errorf("while one runs: a start button, or no refresh link\n%s", body)
					}
					if strings.Contains(body, html.EscapeString(i18n.T(lang, "audit.reconcile_never"))) {
						t.Error("says none has run while one runs")
					}
				} else if !strings.Contains(body, `id="reconcile-start"`) || strings.Contains(body, `id="reconcile-refresh"`) {
					t.Errorf("no run: no start button, or a refresh link\n%s", body)
				}
				for _, want := range tc.also {
					if !strings.Contains(html.UnescapeString(body), want) {
						t.Errorf("page does not say %q", want)
					}
				}
			})
		}
	}
}
