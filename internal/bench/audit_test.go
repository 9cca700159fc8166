package bench

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"log/slog"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"

	_ "modernc.org/sqlite"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/testenv"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
)

const auditEvents = 1_000_000

// fillAudit writes n chained events spread over a year, in one transaction
// per 50,000 rows, straight into a migrated SQLite file.
func fillAudit(b *testing.B, path string, n int) {
	b.Helper()
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	st.Close()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	actions := []string{audit.ActionLogin, audit.ActionLogin, audit.ActionIssue, audit.ActionDownload, audit.ActionRevoke, audit.ActionLogout}
	start := time.Now().Add(-365 * 24 * time.Hour)
	step := 365 * 24 * time.Hour / time.Duration(n)
	var prev *audit.Event
	for i := 0; i < n; {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		stmt, err := tx.Prepare(`INSERT INTO audit_events VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			b.Fatal(err)
		}
		for j := 0; j < 50_000 && i < n; j, i = j+1, i+1 {
			user := fmt.Sprintf("user%03d", rng.IntN(500))
			e := &audit.Event{ID: int64(i + 1), Time: start.Add(time.Duration(i) * step), Actor: user, Subject: user,
				Action: actions[rng.IntN(len(actions))], Outcome: audit.OutcomeSuccess, ClientIP: "10.1.2.3",
				UserAgent: "Mozilla/5.0", RequestID: strconv.Itoa(i), Details: `{"k":"v"}`}
			if rng.IntN(20) == 0 {
				e.Outcome = audit.OutcomeFailure
			}
			if e.Action == audit.ActionIssue {
				e.Serial = fmt.Sprintf("%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
			}
			audit.Seal(e, prev)
			prev = e
			if _, err := stmt.Exec(e.ID, e.Time.UnixMicro(), e.Actor, e.Subject, e.Action, e.Outcome, e.ClientIP, e.UserAgent,
				e.RequestID, e.Serial, e.Details, e.PrevHash, e.Hash); err != nil {
				b.Fatal(err)
			}
		}
		stmt.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// peakRSS returns the process's peak resident set (VmHWM) in MiB.
func peakRSS() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// resetPeakRSS starts a new VmHWM measurement (Linux clear_refs "5").
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// BenchmarkAudit: a filtered, keyset-paged audit page over 1,000,000 events
// (bar: p95 < 50 ms), and a full CSV export whose memory stays flat.
func BenchmarkAudit(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.db")
	t0 := time.Now()
	fillAudit(b, path, auditEvents)
	b.Logf("filled %d events in %s", auditEvents, time.Since(t0).Round(time.Second))
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.RebuildAuditDaily(context.Background()); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	filters := []func() store.AuditFilter{
		func() store.AuditFilter { return store.AuditFilter{Actor: fmt.Sprintf("user%03d", rng.IntN(500))} },
		func() store.AuditFilter {
			return store.AuditFilter{Action: audit.ActionLogin, Outcome: audit.OutcomeFailure, BeforeID: int64(rng.IntN(auditEvents))}
		},
		func() store.AuditFilter {
			from := time.Now().Add(-time.Duration(rng.IntN(300)) * 24 * time.Hour)
			return store.AuditFilter{From: from, To: from.Add(7 * 24 * time.Hour)}
		},
		func() store.AuditFilter {
			return store.AuditFilter{Serial: fmt.Sprintf("%02x:%02x:%02x", rng.IntN(16), rng.IntN(256), rng.IntN(256))}
		},
		func() store.AuditFilter {
			return store.AuditFilter{Subject: fmt.Sprintf("user%03d", rng.IntN(500)), Action: audit.ActionIssue, BeforeID: int64(rng.IntN(auditEvents))}
		},
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < 500; i++ {
		f := filters[i%len(filters)]()
		f.Limit = 51
		start := time.Now()
		if _, err := st.QueryAudit(context.Background(), f); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)*50/100].Microseconds())/1000, "page_p50_ms")
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "page_p95_ms(<50)")
	chartStart := time.Now()
	if _, err := st.AuditDaily(context.Background(), time.Now().Add(-30*24*time.Hour), time.Now()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(chartStart).Microseconds())/1000, "chart_30d_ms")

	// Export: the handler streams into a client that discards; compare the
	// peak RSS of exporting 100,000 events with exporting all 1,000,000.
	e := setupExportServer(b, st)
	for _, n := range []int{100_000, auditEvents} {
		resetPeakRSS()
		base := peakRSS()
		start := time.Now()
		got := e.export(b, n)
		b.ReportMetric(peakRSS()-base, fmt.Sprintf("export_%dk_peak_rss_growth_MiB", n/1000))
		b.ReportMetric(time.Since(start).Seconds(), fmt.Sprintf("export_%dk_s", n/1000))
		if got < int64(n) {
			b.Fatalf("export wrote %d bytes for %d events", got, n)
		}
	}
}

type exportServer struct {
	url    string
	client *http.Client
}

func (e *exportServer) export(b *testing.B, n int) int64 {
	b.Helper()
	to := ""
	if n < auditEvents {
		// Events are evenly spread over the year: a time window selects ~n.
		days := 365 * n / auditEvents
		to = "&to=" + time.Now().Add(-365*24*time.Hour+time.Duration(days)*24*time.Hour).Format("2006-01-02")
	}
	resp, err := e.client.Get(e.url + "/audit/export?format=csv" + to)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("export: %d", resp.StatusCode)
	}
	written, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	return written
}

// setupExportServer serves the portal on the filled database and logs in the
// demo auditor, so the export runs through the real handler and store.
func setupExportServer(b *testing.B, st *sqlite.DB) *exportServer {
	b.Helper()
	v := testenv.StartConfiguredVault(b)
	cfg := config.Default()
	cfg.VaultAddr = v.Addr
	cfg.AppRoleRoleID = v.Setup.ServiceRoleID
	cfg.AppRoleSecretID = v.Setup.ServiceSecretID
	cfg.DB = st.Path()
	h, cleanup, err := app.Build(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cleanup)
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(srv.URL+"/login", url.Values{"username": {"audrey"}, "password": {v.Password(b, "audrey")}})
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		b.Fatalf("auditor login: %d", resp.StatusCode)
	}
	return &exportServer{url: srv.URL, client: c}
}
