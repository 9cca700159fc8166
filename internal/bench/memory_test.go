package bench

import (
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

const (
	memClients = 32 // concurrent issuances, DESIGN.md's memory target
	memRounds  = 5
)

// BenchmarkMemory: peak resident memory while 32 sessions issue at once
// (bar: under 64 MiB), and whether goroutines are left behind afterwards
// (bar: none). The process holds the portal and the 32 HTTP clients, so the
// figure is an upper bound on the portal's own; Vault runs apart.
func BenchmarkMemory(b *testing.B) {
	e := setupEnv(b, memClients)
	clients := make([]*http.Client, memClients)
	for i, u := range e.users {
		clients[i] = e.login(b, u)
	}
	// Two rounds first, so that what stays (connection pools, prepared
	// statements, parsed chains) is in the baseline and only growth counts.
	// A leak grows with the 160 issuances measured; a pool that opens one
	// more connection to Vault shows as 2 (its read and write loops).
	for r := 0; r < 2; r++ {
		if err := issueAll(clients, e.srv.URL); err != nil {
			b.Fatal(err)
		}
	}
	idle(clients)
	before := settledGoroutines(0)
	debug.FreeOSMemory()
	resetPeakRSS()
	start := peakRSS()
	b.ResetTimer()
	for r := 0; r < memRounds; r++ {
		if err := issueAll(clients, e.srv.URL); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	peak := peakRSS()
	idle(clients)
	after := settledGoroutines(before)
	b.ReportMetric(start, "rss_before_MiB")
	b.ReportMetric(peak, "peak_rss_MiB(<64)")
	b.ReportMetric(float64(after-before), "goroutines_left")
}

// issueAll has every client issue one certificate, all at once.
func issueAll(clients []*http.Client, base string) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := issueViaPortal(c, base); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return fmt.Errorf("issue: %w", err)
	}
	return nil
}

// idle closes the clients' kept-alive connections, so that the server's
// goroutines for them end and do not count as left behind.
func idle(clients []*http.Client) {
	for _, c := range clients {
		c.CloseIdleConnections()
	}
}

// settledGoroutines waits up to 3 s for the goroutine count to fall to
// target (deferred audit writes finish within 100 ms, closed connections
// end) and returns it.
func settledGoroutines(target int) int {
	deadline := time.Now().Add(3 * time.Second)
	n := runtime.NumGoroutine()
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		m := runtime.NumGoroutine()
		if target > 0 && m <= target || target == 0 && m == n {
			return m
		}
		n = m
	}
	return n
}
