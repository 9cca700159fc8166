package main

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv"
)

// TestReconcilePageShowsHold: while the trail holds automatic revocation
// (a reconcile.held not yet followed by reconcile.resumed), the auditor's
// /audit/reconcile says so above the results, in EN and KO: what is held
// in plain words, who (the held employees, escaped: their names come from
// certificate subjects), how many name no employee, since when, what to do
// for each scope, and a link to the event in the trail; the JSON form
// (?format=json) carries the same facts as its hold object. Once the hold
// is resumed the notice is gone and the JSON hold is null. The events are
// appended to the trail as a replica's run records them.
func TestReconcilePageShowsHold(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	st, err := sqlite.Open(context.Background(), p.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))

	since := time.Date(2026, 12, 1, 9, 30, 15, 0, time.UTC)
	appendEvent := func(t *testing.T, action, outcome string, details map[string]string) int64 {
		t.Helper()
		b, err := json.Marshal(details)
		if err != nil {
			t.Fatal(err)
		}
		e := &audit.Event{Time: since, Actor: "certportal", Action: action, Outcome: outcome, Details: string(b)}
		if err := st.AppendAudit(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		return e.ID
	}
	// notice returns the hold's notice on the page in lang, "" without one.
	notice := func(t *testing.T, lang i18n.Lang) string {
		t.Helper()
		r := audrey.get("/audit/reconcile?lang=" + string(lang))
		if r.StatusCode != http.StatusOK {
			t.Fatalf("reconcile page (%s): %d\n%.300s", lang, r.StatusCode, r.Body)
		}
		if !strings.Contains(string(r.Body), `id="reconcile-last"`) {
			t.Fatalf("reconcile page (%s) without its results:\n%s", lang, r.Body)
		}
		return extract(r.Body, `<section class="held" id="reconcile-held"`, "</section>")
	}
	// jsonHold is the hold in the page's JSON form (nil for null).
	jsonHold := func(t *testing.T) *reconcileHold {
		t.Helper()
		r := audrey.get("/audit/reconcile?format=json")
		if r.StatusCode != http.StatusOK {
			t.Fatalf("reconcile json: %d\n%.300s", r.StatusCode, r.Body)
		}
		parseReconcileJSON(t, r) // the answer's shape, hold included
		var body struct {
			Hold json.RawMessage `json:"hold"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		return decodeReconcileHold(t, body.Hold)
	}
	if n := notice(t, i18n.English); n != "" {
		t.Fatalf("notice without a hold:\n%s", n)
	}
	if h := jsonHold(t); h != nil {
		t.Fatalf("JSON hold without a hold: %+v", h)
	}

	const evil = `<script>alert(1)</script>`
	tests := []struct {
		name    string
		details map[string]string
		title   string
		// texts: catalog keys with their arguments the notice shows,
		// absent: catalog keys it must not.
		texts  map[string][]any
		absent []string
		names  bool // held_employees shown
		// The JSON form's hold: scope, employees, unattributed.
		scope        string
		employees    []reconcileHeldUser
		unattributed int
	}{
		{"employees", map[string]string{"scope": "employees", "held_employees": "alice (25) " + evil + " (6)", "serials": "01:02 03:04", "max": "20", "per_user_max": "5"},
			"audit.held_title_employees", map[string][]any{"audit.held_employees": nil, "audit.held_do_employees": nil},
			[]string{"audit.held_do_unattributed", "audit.held_do_all", "audit.held_all"}, true,
			"employees", []reconcileHeldUser{{"alice", 25}, {evil, 6}}, 0},
		{"unattributed", map[string]string{"scope": "unattributed", "unattributed": "3", "serials": "05:06", "max": "20", "per_user_max": "5"},
			"audit.held_title_unattributed", map[string][]any{"audit.held_unattributed": {3}, "audit.held_do_unattributed": nil},
			[]string{"audit.held_employees", "audit.held_do_employees", "audit.held_do_all"}, false,
			"unattributed", []reconcileHeldUser{}, 3},
		{"employees and unattributed", map[string]string{"scope": "employees+unattributed", "held_employees": "alice (25) " + evil + " (6)", "unattributed": "2", "serials": "01:02", "max": "20", "per_user_max": "5"},
			"audit.held_title_both", map[string][]any{"audit.held_employees": nil, "audit.held_do_employees": nil, "audit.held_unattributed": {2}, "audit.held_do_unattributed": nil},
			[]string{"audit.held_do_all", "audit.held_all"}, true,
			"employees+unattributed", []reconcileHeldUser{{"alice", 25}, {evil, 6}}, 2},
		{"all", map[string]string{"scope": "all", "unattributed": "4", "serials": "01:02 (and 40 more)", "max": "20", "per_user_max": "5"},
			"audit.held_title_all", map[string][]any{"audit.held_all": nil, "audit.held_all_unattributed": {4}, "audit.held_do_all": nil},
			[]string{"audit.held_employees", "audit.held_do_employees", "audit.held_do_unattributed"}, false,
			"all", []reconcileHeldUser{}, 4},
		// A hold recorded before scopes held everything (as the gauges read it).
		{"without a scope", map[string]string{"serials": "01:02", "max": "20"},
			"audit.held_title_all", map[string][]any{"audit.held_all": nil, "audit.held_do_all": nil},
			[]string{"audit.held_all_unattributed", "audit.held_employees", "audit.held_do_unattributed"}, false,
			"all", []reconcileHeldUser{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := appendEvent(t, audit.ActionReconcileHeld, audit.OutcomeDenied, tt.details)
			for _, lang := range []i18n.Lang{i18n.English, i18n.Korean} {
				raw := notice(t, lang)
				if raw == "" {
					t.Fatalf("%s: no notice while %s is held", lang, tt.details["scope"])
				}
				text := html.UnescapeString(raw)
				want := []string{i18n.T(lang, tt.title), i18n.T(lang, "audit.held_since", "2026-12-01 09:30:15 UTC"), i18n.T(lang, "audit.held_event")}
				for k, args := range tt.texts {
					want = append(want, i18n.T(lang, k, args...))
				}
				for _, w := range want {
					if !strings.Contains(text, w) {
						t.Errorf("%s: notice lacks %q:\n%s", lang, w, raw)
					}
				}
				for _, k := range tt.absent {
					if s := verbless(i18n.T(lang, k)); strings.Contains(text, s) {
						t.Errorf("%s: notice for scope %q says %q:\n%s", lang, tt.details["scope"], s, raw)
					}
				}
				if !strings.Contains(raw, `href="/audit?action=reconcile.held&amp;before=`+strconv.FormatInt(id+1, 10)+`"`) {
					t.Errorf("%s: notice does not link to event %d in the trail:\n%s", lang, id, raw)
				}
				names := extract([]byte(raw), `id="held-employees" translate="no">`, "</p>")
				switch {
				case !tt.names && names != "":
					t.Errorf("%s: employees named for scope %q: %s", lang, tt.details["scope"], names)
				case tt.names && names != "alice (25) &lt;script&gt;alert(1)&lt;/script&gt; (6)":
					t.Errorf("%s: held employees shown as %q, want them escaped", lang, names)
				}
				if strings.Contains(raw, "<script") {
					t.Errorf("%s: a name from a certificate reached the page as markup:\n%s", lang, raw)
				}
			}
			// The JSON form carries the same facts, from the same hold.
			trailLink := "/audit?action=reconcile.held&before=" + strconv.FormatInt(id+1, 10)
			if h := jsonHold(t); h == nil {
				t.Errorf("JSON hold null while %s is held", tt.scope)
			} else if h.Scope != tt.scope || h.Since != "2026-12-01T09:30:15Z" || h.EventID != id || h.Trail != trailLink ||
				!slices.Equal(h.Employees, tt.employees) || h.EmployeesUnnamed != 0 || h.Unattributed != tt.unattributed {
				t.Errorf("JSON hold %+v, want scope %q since 2026-12-01T09:30:15Z, event %d, trail %s, employees %v, unattributed %d",
					*h, tt.scope, id, trailLink, tt.employees, tt.unattributed)
			}
			// The link leads to the hold's event, first on the trail page.
			trail := audrey.get("/audit?action=reconcile.held&before=" + strconv.FormatInt(id+1, 10))
			if first := extract(trail.Body, `<tbody><tr class="outcome-denied" data-id="`, `"`); first != strconv.FormatInt(id, 10) {
				t.Errorf("trail page from the notice starts with event %q, want %d", first, id)
			}

			appendEvent(t, audit.ActionReconcileResumed, audit.OutcomeSuccess, map[string]string{"held_since": since.Format(time.RFC3339), "vault_only": "0", "max": "20"})
			for _, lang := range []i18n.Lang{i18n.English, i18n.Korean} {
				if n := notice(t, lang); n != "" {
					t.Errorf("%s: notice after reconcile.resumed:\n%s", lang, n)
				}
			}
			if h := jsonHold(t); h != nil {
				t.Errorf("JSON hold after reconcile.resumed: %+v", *h)
			}
		})
	}
}

// verbless is the longest part of a catalog message around its %d, to
// look for in a page.
func verbless(msg string) string {
	before, after, ok := strings.Cut(msg, "%d")
	if !ok || len(before) > len(after) {
		return before
	}
	return after
}

// TestReconcilePageBeforeAnyRun: before the first reconciliation the page
// says none has run and shows no result tables, whose "(0)" and "Nothing
// found" would read as a check that came back clean; after one, they are
// there.
func TestReconcilePageBeforeAnyRun(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_RECONCILE_INTERVAL": "0"})
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	for _, lang := range []i18n.Lang{i18n.English, i18n.Korean} {
		page := string(audrey.get("/audit/reconcile?lang=" + string(lang)).Body)
		if !strings.Contains(page, html.EscapeString(i18n.T(lang, "audit.reconcile_never"))) {
			t.Errorf("%s: page before any run does not say so\n%s", lang, page)
		}
		if strings.Contains(page, `id="vault-only"`) || strings.Contains(page, html.EscapeString(i18n.T(lang, "audit.none"))) {
			t.Errorf("%s: result tables before any run\n%s", lang, page)
		}
	}
	reconcileJSON(t, audrey)
	if page := string(audrey.get("/audit/reconcile").Body); !strings.Contains(page, `id="vault-only"`) {
		t.Errorf("no result tables after a run\n%s", page)
	}
}
