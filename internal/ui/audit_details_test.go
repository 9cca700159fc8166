package ui

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"html"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/web"
)

// notDetailKeys are keys of string maps in the scanned code that are not
// audit details: AppRole file names, Vault secret-id metadata, a
// Content-Disposition parameter, a webhook's JSON and an export filter's
// parts.
var notDetailKeys = map[string]bool{
	"role-id": true, "secret-id": true, // setup's AppRole files
	"created_by": true, "replaces": true, // Vault's secret-id metadata (host is a detail too)
	"filename": true, // Content-Disposition
	"spacing":  true, // a webhook body
	// describeFilter's parts, written into the one "filter" detail
	"actor": true, "action": true, "outcome": true, "serial": true,
}

// writtenDetailKeys are the keys of every map[string]string literal and of
// every map assignment with a literal key in the code that writes audit
// events (the service, the app's start event, reminders, setup).
func writtenDetailKeys(t *testing.T) map[string]string {
	t.Helper()
	keys := map[string]string{}
	fset := token.NewFileSet()
	for _, dir := range []string{"../portal", "../app", "../notify", "../../cmd/certportal"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			add := func(e ast.Expr) {
				if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
					k, _ := strconv.Unquote(bl.Value)
					if !notDetailKeys[k] {
						keys[k] = fset.Position(bl.Pos()).String()
					}
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.CompositeLit:
					mt, ok := x.Type.(*ast.MapType)
					if !ok || types(mt.Key) != "string" || types(mt.Value) != "string" {
						return true
					}
					for _, el := range x.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok {
							add(kv.Key)
						}
					}
				case *ast.AssignStmt:
					for _, l := range x.Lhs {
						if ix, ok := l.(*ast.IndexExpr); ok {
							add(ix.Index)
						}
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(keys) < 50 {
		t.Fatalf("found only %d detail keys: the scan is broken", len(keys))
	}
	return keys
}

func types(e ast.Expr) string {
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// TestEveryDetailKeyLabelled: every detail key the portal writes has a
// label in both languages, so the Korean audit page shows no raw English
// key (count, window, note were shown as code).
func TestEveryDetailKeyLabelled(t *testing.T) {
	for k, where := range writtenDetailKeys(t) {
		for _, l := range i18n.Supported {
			if !i18n.Has(l, "detail."+k) {
				t.Errorf("%s: detail key %q (%s) has no label detail.%s", l, k, where, k)
			}
		}
	}
}

// auditPageBody renders the audit page in lang with events.
func auditPageBody(t *testing.T, lang i18n.Lang, events []*audit.Event) string {
	t.Helper()
	s, _ := mustErrorServer(t, panickingStore{})
	r := httptest.NewRequest(http.MethodGet, "/audit?lang="+string(lang), nil).WithContext(context.Background())
	p := s.newPage(r, "audit.title")
	p.Actions, p.Outcomes, p.Events = auditActions, auditOutcomes, events
	rec := httptest.NewRecorder()
	s.render(rec, r, http.StatusOK, "audit", p)
	if rec.Code != http.StatusOK {
		t.Fatalf("audit page: %d\n%s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// TestAuditPageDetailsReadable: on the audit page a reason code reads as
// its catalog text, a Go duration as days, an RFC 3339 time as the page's
// other times, the counted-refusals note in the reader's language, and no
// known key appears raw; the raw value stays in the title.
func TestAuditPageDetailsReadable(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	events := []*audit.Event{
		{ID: 1, Time: at, Actor: "alice", Subject: "alice", Action: audit.ActionAccessDenied, Outcome: audit.OutcomeDenied,
			Details: `{"count":"4","last_path":"/audit","note":"further refusals of this user in the window after the first, recorded once","window":"1h0m0s","window_start":"2026-03-04T05:00:00Z"}`},
		{ID: 2, Time: at, Actor: "alice", Subject: "alice", Action: audit.ActionRevoke, Outcome: audit.OutcomeIntent, Serial: "1a:2b",
			Details: `{"reason":"lost","subject":"alice@example.com","ticket":""}`},
		{ID: 3, Time: at, Actor: "alice", Subject: "alice", Action: audit.ActionIssue, Outcome: audit.OutcomeSuccess, Serial: "1a:2c",
			Details: `{"not_after":"2026-06-02T05:06:07Z","ttl":"2160h0m0s","key_type":"ec-256"}`},
	}
	for _, lang := range i18n.Supported {
		body := auditPageBody(t, lang, events)
		for _, k := range []string{"count", "last_path", "note", "window", "window_start", "reason", "ttl", "not_after"} {
			if strings.Contains(body, "<code>"+k+"</code>") {
				t.Errorf("%s: detail key %s shown raw", lang, k)
			}
			if !strings.Contains(body, "<dt>"+html.EscapeString(i18n.T(lang, "detail."+k))+"</dt>") {
				t.Errorf("%s: no label for %s", lang, k)
			}
		}
		for _, want := range []string{
			html.EscapeString(i18n.T(lang, "ttl.days", 90)),
			html.EscapeString(i18n.T(lang, "duration.hour")),
			html.EscapeString(i18n.T(lang, "reason.lost")),
			html.EscapeString(i18n.T(lang, "detailtext.denied_counted")),
			"2026-06-02 05:06:07 UTC", "2026-03-04 05:00:00 UTC",
			`title="2160h0m0s"`, `title="2026-06-02T05:06:07Z"`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: page lacks %s", lang, want)
			}
		}
		raws := []string{">2160h0m0s<", ">1h0m0s<", ">2026-06-02T05:06:07Z<", ">further refusals"}
		if i18n.T(lang, "reason.lost") != "lost" { // English's text is the code
			raws = append(raws, ">lost<")
			if !strings.Contains(body, `title="lost"`) {
				t.Errorf("%s: the reason's code is not in its title", lang)
			}
		}
		for _, raw := range raws {
			if strings.Contains(body, raw) {
				t.Errorf("%s: page shows the raw value %s", lang, raw)
			}
		}
	}
	ko := auditPageBody(t, i18n.Korean, events)
	if !strings.Contains(ko, "90일") || !strings.Contains(ko, "분실") {
		t.Errorf("Korean page lacks 90일 or 분실")
	}
}

// TestDetailValues: durations in days, hours and minutes, lists of them,
// and values that only look like one are left alone.
func TestDetailValues(t *testing.T) {
	for _, c := range []struct{ key, raw, en, ko string }{
		{"ttl", "2160h0m0s", "90 days", "90일"},
		{"ttl", "24h0m0s", "1 day", "1일"},
		{"window", "1h0m0s", "1 hour", "1시간"},
		{"window", "36h0m0s", "1 day 12 hours", "1일 12시간"},
		{"login_failure_window", "15m0s", "15 minutes", "15분"},
		{"clock_skew_warn", "30s", "30 seconds", "30초"},
		{"ttls", "[24h0m0s 720h0m0s]", "1 day, 30 days", "1일, 30일"},
		{"ttls", "24h0m0s,2160h0m0s", "1 day, 90 days", "1일, 90일"},
		{"count", "4", "4", "4"},
		{"reason", "lost", "Lost", "분실"},
		{"reason", "no portal policy", "no portal policy", "포털 정책 없음"},
		{"reason", "something new", "something new", "something new"},
		// A login's roles and a session's before and after.
		{"roles", "employee,auditor", "employee, auditor", "직원, 감사자"},
		{"was", "employee,helpdesk", "employee, helpdesk", "직원, 헬프데스크"},
		{"roles", string(portal.RoleAuditor), "auditor", "감사자"},
		{"roles", "employee,operator", "employee,operator", "employee,operator"},
		// What a setup run changed, each step by its message; one no
		// message wrote stays as recorded.
		{"changed", "PKI mount pki; demo user audrey; user lockout on userpass: 10 failures lock for 5m0s, forgotten after 15m0s (the portal refuses after 5)",
			"PKI mount pki; demo user audrey; user lockout on userpass: 10 failures lock for 5 minutes, forgotten after 15 minutes (the portal refuses after 5)",
			"PKI 마운트 pki; 데모 사용자 audrey; userpass의 사용자 잠금: 10번 실패하면 5분 동안 잠기고 15분 뒤에 잊힘 (포털은 5번 뒤에 거부)"},
		{"changed", "policy p; a step of an older setup", "policy p; a step of an older setup", "정책 p; a step of an older setup"},
	} {
		for _, l := range []struct {
			lang i18n.Lang
			want string
		}{{i18n.English, c.en}, {i18n.Korean, c.ko}} {
			got := eventDetails(l.lang, `{"`+c.key+`":"`+c.raw+`"}`)
			if len(got) != 1 || got[0].Value != l.want {
				t.Errorf("%s %s=%q: %+v, want %q", l.lang, c.key, c.raw, got, l.want)
				continue
			}
			if changed := l.want != c.raw; changed != (got[0].Raw != "") || (changed && got[0].Raw != c.raw) {
				t.Errorf("%s %s=%q: raw %q", l.lang, c.key, c.raw, got[0].Raw)
			}
		}
	}
}

// cssRules are style.css's rules as selector → declarations, in order.
type cssRule struct {
	sel   string
	decls map[string]string
}

func cssRules(t *testing.T) []cssRule {
	t.Helper()
	b, err := fs.ReadFile(web.Static, "static/style.css")
	if err != nil {
		t.Fatal(err)
	}
	src := regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(string(b), "")
	var out []cssRule
	for _, m := range regexp.MustCompile(`([^{}]+)\{([^{}]*)\}`).FindAllStringSubmatch(src, -1) {
		decls := map[string]string{}
		for _, d := range strings.Split(m[2], ";") {
			if k, v, ok := strings.Cut(d, ":"); ok {
				decls[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
		for _, sel := range strings.Split(m[1], ",") {
			out = append(out, cssRule{strings.TrimSpace(sel), decls})
		}
	}
	return out
}

// badgeColours is what a <span class="badge outcome X"> gets from rules
// made of classes only: the most specific match, the later on a tie.
func badgeColours(rules []cssRule, classes ...string) (bg, fg string) {
	has := map[string]bool{}
	for _, c := range classes {
		has[c] = true
	}
	bestBG, bestFG := -1, -1
	for _, r := range rules {
		if !strings.HasPrefix(r.sel, ".") || strings.ContainsAny(r.sel, " >:[#") {
			continue
		}
		parts := strings.Split(r.sel[1:], ".")
		ok := true
		for _, p := range parts {
			ok = ok && has[p]
		}
		if !ok {
			continue
		}
		if v, found := r.decls["background"]; found && len(parts) >= bestBG {
			bg, bestBG = v, len(parts)
		}
		if v, found := r.decls["color"]; found && len(parts) >= bestFG {
			fg, bestFG = v, len(parts)
		}
	}
	if fg == "" {
		fg = "#1d2430" // body text
	}
	return bg, fg
}

func luminance(t *testing.T, hex string) float64 {
	t.Helper()
	hex = strings.Fields(hex)[0]
	if len(hex) != 7 || hex[0] != '#' {
		t.Fatalf("colour %q: want #rrggbb", hex)
	}
	var c [3]float64
	for i := range c {
		n, err := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		if err != nil {
			t.Fatal(err)
		}
		v := float64(n) / 255
		if v <= 0.03928 {
			c[i] = v / 12.92
		} else {
			c[i] = math.Pow((v+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*c[0] + 0.7152*c[1] + 0.0722*c[2]
}

func contrast(t *testing.T, a, b string) float64 {
	la, lb := luminance(t, a), luminance(t, b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

// TestOutcomeBadgeColours: an attempt or an undelivered file is not
// painted as a success: success green, failure and denied red, every other
// outcome the same third (amber) colour, each readable (WCAG AA, 4.5:1).
func TestOutcomeBadgeColours(t *testing.T) {
	rules := cssRules(t)
	bgOf := map[string]string{}
	for _, o := range auditOutcomes {
		bg, fg := badgeColours(rules, "badge", "outcome", o)
		if bg == "" {
			t.Fatalf("outcome %s: no background", o)
		}
		if c := contrast(t, fg, bg); c < 4.5 {
			t.Errorf("outcome %s: %s on %s has contrast %.2f, below 4.5", o, fg, bg, c)
		}
		bgOf[o] = bg
	}
	success, failure := bgOf[audit.OutcomeSuccess], bgOf[audit.OutcomeFailure]
	if success == failure || bgOf[audit.OutcomeDenied] != failure {
		t.Errorf("success %s, failure %s, denied %s", success, failure, bgOf[audit.OutcomeDenied])
	}
	for _, o := range auditOutcomes {
		if o == audit.OutcomeSuccess || o == audit.OutcomeFailure || o == audit.OutcomeDenied {
			continue
		}
		if bgOf[o] == success || bgOf[o] == failure {
			t.Errorf("outcome %s has the colour of success or failure (%s)", o, bgOf[o])
		}
		if bgOf[o] != bgOf[audit.OutcomeIntent] {
			t.Errorf("outcome %s: %s, unlike intent's %s", o, bgOf[o], bgOf[audit.OutcomeIntent])
		}
	}
}

// TestDetailTextsInCatalog: every fixed value the page translates has its
// text in both languages, with a place for the variable end where it has one.
func TestDetailTextsInCatalog(t *testing.T) {
	for kv, key := range detailTexts {
		for _, l := range i18n.Supported {
			if !i18n.Has(l, key) {
				t.Errorf("%s: %q shows %s, which the catalog lacks", l, kv, key)
			}
		}
	}
	for _, p := range detailPrefixes {
		for _, l := range i18n.Supported {
			if !i18n.Has(l, p.text) || strings.Count(i18n.T(l, p.text), "%s") != 1 {
				t.Errorf("%s: %s lacks its text or its one %%s", l, p.text)
			}
		}
	}
	// Each is still what the code writes (a text changed there would be
	// shown raw again): the literal is in the code that writes it.
	var src strings.Builder
	for _, dir := range []string{"../portal", "../session", "../notify", "../app", "../store", "."} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if !strings.HasSuffix(f, "_test.go") && f != "audit.go" { // not the table itself
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				src.Write(b)
			}
		}
	}
	for kv := range detailTexts {
		_, v, _ := strings.Cut(kv, "=")
		if !strings.Contains(src.String(), strconv.Quote(v)) {
			t.Errorf("%q: no code writes %q", kv, v)
		}
	}
	for _, p := range detailPrefixes {
		if !strings.Contains(src.String(), strconv.Quote(p.prefix)) {
			t.Errorf("no code writes %q", p.prefix)
		}
	}
	// The variable end is read too: a time as the page's times.
	got := eventDetails(i18n.Korean, `{"reason":"too many failed logins for this username; further attempts are refused unrecorded until 2026-03-04T05:06:07Z"}`)
	if want := i18n.T(i18n.Korean, "detailtext.user_throttled_until", "2026-03-04 05:06:07 UTC"); len(got) != 1 || got[0].Value != want {
		t.Errorf("throttled until: %+v, want %q", got, want)
	}
}

// TestDetailClientTextAsRecorded: a value chosen outside the portal (a
// label, a ticket) is shown as recorded even when it reads like a
// duration, a time, a boolean or one of the portal's fixed texts.
func TestDetailClientTextAsRecorded(t *testing.T) {
	for _, v := range []string{"2160h0m0s", "true", "2026-06-02T05:06:07Z", "lost", "revoked"} {
		for _, k := range []string{"label", "ticket", "for", "filter", "error", "host"} {
			if got := detailValue(i18n.Korean, k, v); got != v {
				t.Errorf("%s=%q shown as %q", k, v, got)
			}
		}
	}
	if got := detailValue(i18n.Korean, "ttl", "2160h0m0s"); got == "2160h0m0s" {
		t.Errorf("ttl not read as a duration: %q", got)
	}
}
