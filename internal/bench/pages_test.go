package bench

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
)

// BenchmarkPages: the pages over 1,000,000 inventory rows in SQLite
// (fillCertificates' shape) through HTTP, the portal a process of its own:
// the inventory report, helpdesk search, a helpdesk user page and the
// dashboard, 40 requests each (p50 and p95 in ms), and the portal
// process's peak RSS. Bars (issue 13): /audit/inventory < 200 ms, the
// others p95 < 50 ms, memory flat in the row count.
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
	b.ReportMetric(rssBefore, "portal_peak_rss_warm_MiB")
	b.ReportMetric(processPeakRSS(b, p.Pid), "portal_peak_rss_MiB")
}
