package main

import (
	"bytes"
	"encoding/csv"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/testenv"
)

// eventIDs lists the data-id of the events on an audit page, in order.
func eventIDs(body []byte) []string {
	var ids []string
	for _, m := range regexp.MustCompile(`<tr class="outcome-[a-z]+" data-id="(\d+)">`).FindAllSubmatch(body, -1) {
		ids = append(ids, string(m[1]))
	}
	return ids
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pagerLink returns the href of the pager link of class cls ("newer" or
// "older"), "" when the page has none.
func pagerLink(body []byte, cls string) string {
	m := regexp.MustCompile(`<a href="([^"]*)" class="` + cls + `"`).FindSubmatch(body)
	if m == nil {
		return ""
	}
	return strings.ReplaceAll(string(m[1]), "&amp;", "&")
}

// TestAuditPageReadable: the audit page pages both ways (older and newer,
// keyset), shows times to the second, details as key–value text and full
// serials, names its fields in the user's language when "from" is after
// "to", and has no English left in Korean (action and outcome names, chart
// labels).
func TestAuditPageReadable(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	serial := alice.issue("modern")
	// A refused request: one access.denied event (repeated refusals in a
	// window are counted into one event, so they cannot fill pages).
	alice.get("/audit")
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	// 60 exports: 60 audit.export events, more than a page.
	for range 60 {
		if r := audrey.get("/audit/export?format=jsonl&actor=nobody"); r.StatusCode != http.StatusOK {
			t.Fatalf("export: %d", r.StatusCode)
		}
	}

	first := audrey.get("/audit")
	if first.StatusCode != http.StatusOK {
		t.Fatalf("/audit: %d", first.StatusCode)
	}
	firstIDs := eventIDs(first.Body)
	if len(firstIDs) != 50 || pagerLink(first.Body, "newer") != "" || pagerLink(first.Body, "older") == "" {
		t.Fatalf("first page: %d events, newer %q, older %q", len(firstIDs), pagerLink(first.Body, "newer"), pagerLink(first.Body, "older"))
	}
	older := audrey.get(pagerLink(first.Body, "older"))
	if ids := eventIDs(older.Body); len(ids) == 0 || atoi(t, ids[0]) >= atoi(t, firstIDs[len(firstIDs)-1]) {
		t.Fatalf("older page: %v after %v", ids, firstIDs[len(firstIDs)-1])
	}
	newerHref := pagerLink(older.Body, "newer")
	if newerHref == "" {
		t.Fatal("older page has no link to newer events")
	}
	back := audrey.get(newerHref)
	if got := eventIDs(back.Body); strings.Join(got, ",") != strings.Join(firstIDs, ",") {
		t.Fatalf("newer from the older page:\n got %v\nwant %v", got, firstIDs)
	}
	if pagerLink(back.Body, "newer") != "" {
		t.Error("the newest page links to newer events")
	}

	issued := audrey.get("/audit?action=certificate.issue")
	body := string(issued.Body)
	if !regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC`).MatchString(body) {
		t.Error("no time to the second on the audit page")
	}
	// Full, with wrap opportunities (<wbr>) between its bytes only.
	if !strings.Contains(strings.ReplaceAll(body, "<wbr>", ""), `<code class="serial">`+serial+`</code>`) {
		t.Errorf("full serial %s not on the page", serial)
	}
	if strings.Contains(body, `{&#34;`) || strings.Contains(body, `{"`) {
		t.Error("details shown as raw JSON")
	}
	if !strings.Contains(body, "<dt>File encryption</dt><dd translate=\"no\">modern</dd>") {
		t.Errorf("details not shown as key–value text:\n%s", extract(issued.Body, `id="events"`, "</table>"))
	}

	r := audrey.get("/audit?from=2026-12-02&to=2026-12-01")
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(string(r.Body), "Check the field &#34;From&#34;: The start date is after the end date.") {
		t.Errorf("from after to: %d\n%s", r.StatusCode, extract(r.Body, `id="form-error">`, "</p>"))
	}
	ko := audrey.get("/audit?from=2026-12-02&to=2026-12-01&lang=ko")
	if ko.StatusCode != http.StatusBadRequest || !strings.Contains(string(ko.Body), "&#34;시작일&#34; 항목을 확인하세요") {
		t.Errorf("from after to, Korean: %d %s", ko.StatusCode, extract(ko.Body, `id="form-error">`, "</p>"))
	}
	koPage := string(audrey.get("/audit?lang=ko").Body)
	for _, english := range []string{">max ", `aria-label="activity"`, ">certificate.issue<", ">access.denied<", ">denied<", ">success<"} {
		if strings.Contains(koPage, english) {
			t.Errorf("Korean audit page shows %q", english)
		}
	}
	for _, korean := range []string{"최대", "접근 거부", "인증서 발급"} {
		if !strings.Contains(koPage, korean) {
			t.Errorf("Korean audit page lacks %q", korean)
		}
	}
}

// TestInventoryReportDrillDown: the report says when it was computed, each
// count leads to the certificates behind it (paged by serial), users link to
// their helpdesk page for staff who hold both roles, and the report exports
// as CSV.
func TestInventoryReportDrillDown(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	v.CreateUser(t, "hana", "hana-password-1", nil, "certportal-helpdesk", "certportal-auditor")
	p := startPortal(t, v, nil)
	alice, bob := newBrowser(t, p.URL), newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	bob.mustLogin("bob", v.Password(t, "bob"))
	a1, a2 := alice.issue("modern"), alice.issue("compat")
	b1 := bob.issue("modern")
	if r := bob.post("/certificates/"+b1+"/revoke", url.Values{"reason": {"lost"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", r.StatusCode)
	}
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))

	rep := audrey.get("/audit/inventory")
	if rep.StatusCode != http.StatusOK || !regexp.MustCompile(`id="as-of">As of <time[^>]*>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>`).Match(rep.Body) {
		t.Fatalf("report without an as-of time: %d\n%s", rep.StatusCode, rep.Body)
	}
	if got := extract(rep.Body, `id="count-active">`, "<"); got != "2" {
		t.Fatalf("active count %q", got)
	}
	activeHref := regexp.MustCompile(`<a href="([^"]*)" id="count-active">`).FindSubmatch(rep.Body)
	if activeHref == nil {
		t.Fatal("the active count links nowhere")
	}
	active := audrey.get(strings.ReplaceAll(string(activeHref[1]), "&amp;", "&"))
	body := string(active.Body)
	if active.StatusCode != http.StatusOK || !strings.Contains(body, `data-serial="`+a1+`"`) || !strings.Contains(body, `data-serial="`+a2+`"`) || strings.Contains(body, `data-serial="`+b1+`"`) {
		t.Fatalf("active drill-down: %d\n%s", active.StatusCode, body)
	}
	// The first column holds the certificate's name above its serial, and
	// says so; the as-of time is a machine-readable <time> as on the report.
	if !strings.Contains(body, `<td data-label="Certificate">`) || !regexp.MustCompile(`id="as-of">As of <time data-seconds datetime="\d{4}-\d\d-\d\dT`).MatchString(body) {
		t.Errorf("drill-down's first column or as-of time:\n%s", body)
	}
	revokedHref := regexp.MustCompile(`<a href="([^"]*)" id="count-revoked">`).FindSubmatch(rep.Body)
	if revoked := string(audrey.get(strings.ReplaceAll(string(revokedHref[1]), "&amp;", "&")).Body); !strings.Contains(revoked, `data-serial="`+b1+`"`) || strings.Contains(revoked, a1) {
		t.Errorf("revoked drill-down:\n%s", revoked)
	}
	if r := audrey.get("/audit/inventory/certificates?state=bogus"); r.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown state: %d", r.StatusCode)
	}
	if !strings.Contains(string(rep.Body), `href="/audit/inventory/certificates?user=alice&amp;at=`) {
		t.Error("an auditor's report does not link users to their certificates")
	}
	hana := newBrowser(t, p.URL)
	hana.mustLogin("hana", "hana-password-1")
	if r := hana.get("/audit/inventory"); !strings.Contains(string(r.Body), `href="/helpdesk/users/alice"`) {
		t.Error("report does not link users to their helpdesk page for helpdesk staff")
	}

	csvResp := audrey.get("/audit/inventory/export?state=active")
	if csvResp.StatusCode != http.StatusOK || csvResp.Header.Get("Content-Type") != "text/csv; charset=utf-8" ||
		!strings.HasPrefix(csvResp.Header.Get("Content-Disposition"), "attachment;") {
		t.Fatalf("inventory csv: %d %v", csvResp.StatusCode, csvResp.Header)
	}
	rows, err := csv.NewReader(bytes.NewReader(csvResp.Body)).ReadAll()
	if err != nil || len(rows) != 3 || rows[0][0] != "serial" {
		t.Fatalf("inventory csv rows: %v %v", err, rows)
	}
	for _, row := range rows[1:] {
		if row[1] != "alice" || row[4] != "active" {
			t.Errorf("csv row %v", row)
		}
	}
	if r := alice.get("/audit/inventory/export"); r.StatusCode != http.StatusForbidden {
		t.Errorf("employee inventory export: %d", r.StatusCode)
	}
	if exp := string(audrey.get("/audit?action=audit.export").Body); !strings.Contains(exp, "inventory state=active") {
		t.Error("inventory export not in the audit trail")
	}
}
