package bench

import (
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
)

// BenchmarkPages: the pages over 1,000,000 inventory rows in SQLite
// (fillCertificates' shape) through HTTP, the portal a process of its own:
// the inventory report, helpdesk search, a helpdesk user page and the
// dashboard, 40 requests each (p50 and p95 in ms), and the portal
// process's peak RSS. Bars (issue 13): /audit/inventory < 200 ms, the
// others p95 < 50 ms, memory flat in the row count. The inventory page's
// counts must equal a direct count of the rows (checkInventoryPage).
func BenchmarkPages(b *testing.B) {
	quiesce()
	path := filepath.Join(b.TempDir(), "certportal.db")
	fillCertificates(b, path, reminderCerts, time.Now())
	v := testenv.StartConfiguredVault(b)
	// An inventory user (three certificates) who is also helpdesk and auditor.
	const staff = "user000123"
	v.CreateUser(b, staff, staff+"-password", nil, "certportal-user", "certportal-helpdesk", "certportal-auditor")
	p := startPortalProc(b, v, path, 100)
	c := (&env{v: v}).loginAt(b, p.URL, staff)
	pages := []struct {
		name string
		path func(i int) string
	}{
		{"inventory", func(int) string { return "/audit/inventory" }},
		{"helpdesk_search", func(i int) string { return fmt.Sprintf("/helpdesk?q=user%04d", i*37%3333) }},
		{"helpdesk_user", func(i int) string { return fmt.Sprintf("/helpdesk/users/user%06d", i*7919%(reminderCerts/3)) }},
		{"dashboard", func(int) string { return "/" }},
	}
	get := func(path string) error {
		resp, err := c.Get(p.URL + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		n, _ := io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK || n < 500 {
			return fmt.Errorf("GET %s: %d, %d bytes", path, resp.StatusCode, n)
		}
		return nil
	}
	for _, pg := range pages { // one each first: prepared statements, templates, page cache
		if err := get(pg.path(0)); err != nil {
			b.Fatal(err)
		}
	}
	checkInventoryPage(b, c, p.URL, path)
	rssBefore := processPeakRSS(b, p.Pid)
	b.ResetTimer()
	for _, pg := range pages {
		var lat []time.Duration
		for i := range 40 {
			start := time.Now()
			if err := get(pg.path(i + 1)); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, pg.name+"_p50_ms")
		b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, pg.name+"_p95_ms")
	}
	b.StopTimer()
	// CERTPORTAL_BENCH_CPUPROFILE=file: a CPU profile of the portal over 400
	// more inventory pages, after the measured ones (what the page spends
	// its time on).
	if path := os.Getenv("CERTPORTAL_BENCH_CPUPROFILE"); path != "" {
		stop := p.startProfile(b, path)
		for range 400 {
			if err := get("/audit/inventory"); err != nil {
				b.Fatal(err)
			}
		}
		stop()
	}
	b.ReportMetric(rssBefore, "portal_peak_rss_warm_MiB")
	b.ReportMetric(processPeakRSS(b, p.Pid), "portal_peak_rss_MiB")
}

// checkInventoryPage: the five counts /audit/inventory shows equal a direct
// count of the rows by each state's condition at the page's moment.
func checkInventoryPage(b *testing.B, c *http.Client, base, path string) {
	b.Helper()
	resp, err := c.Get(base + "/audit/inventory")
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("inventory page: %d %v", resp.StatusCode, err)
	}
	m := regexp.MustCompile(`state=active&amp;at=(\d+)" id="count-active">(\d+)<`).FindSubmatch(body)
	if m == nil {
		b.Fatalf("no active count on the page:\n%s", body)
	}
	at, _ := strconv.ParseInt(string(m[1]), 10, 64)
	raw, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	// The links give the page's moment to the second only, so it lies in
	// [at, at+1s): count at both ends; the shown number must lie between
	// (here certificates expire about 34 s apart, so mostly both agree).
	for _, f := range []struct{ id, cond string }{
		{"count-active", "revoked_at IS NULL AND not_after > ?1"},
		{"count-exp7", "revoked_at IS NULL AND not_after > ?1 AND not_after <= ?1 + 7 * 86400000"},
		{"count-exp30", "revoked_at IS NULL AND not_after > ?1 AND not_after <= ?1 + 30 * 86400000"},
		{"count-expired", "revoked_at IS NULL AND not_after <= ?1"},
		{"count-revoked", "revoked_at IS NOT NULL"},
	} {
		sm := regexp.MustCompile(`id="` + f.id + `">(\d+)<`).FindSubmatch(body)
		if sm == nil {
			b.Fatalf("no %s on the page", f.id)
		}
		shown, _ := strconv.Atoi(string(sm[1]))
		var lo, hi int
		for i, ms := range []int64{at * 1000, at*1000 + 999} {
			var n int
			if err := raw.QueryRow(`SELECT COUNT(*) FROM certificates WHERE `+f.cond, ms).Scan(&n); err != nil {
				b.Fatal(err)
			}
			if i == 0 {
				lo, hi = n, n
			}
			lo, hi = min(lo, n), max(hi, n)
		}
		if shown < lo || shown > hi {
			b.Errorf("%s: the page shows %d, a direct count %d..%d", f.id, shown, lo, hi)
		}
	}
}
