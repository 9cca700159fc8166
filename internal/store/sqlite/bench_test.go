package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

// BenchmarkIssuanceWrites replays the writes of one portal issuance from 1
// and from 8 concurrent clients: the place under the cap (reservation, unsynced), the
// inventory row with its issue event (waited for), then the download event
// (deferred). It reports the process CPU and the commits each issuance
// costs (and of those the unsynced ones), the things that decide how much
// the store takes from issuance on a busy portal. Each user keeps every
// certificate, as in BenchmarkIssuanceCPU (internal/bench), so the cap's
// count runs over a few hundred active certificates.
func BenchmarkIssuanceWrites(b *testing.B) {
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchIssuanceWrites(b, clients) })
	}
}

func benchIssuanceWrites(b *testing.B, clients int) {
	db, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	var next atomic.Int64
	var downloads sync.WaitGroup
	issue := func() error {
		n := next.Add(1)
		user := fmt.Sprintf("bench%d", n%8)
		now := time.Now()
		reservation, err := db.ReserveIssuance(ctx, store.Reservation{Username: user, Max: 1 << 30, At: now, Expires: now.Add(time.Minute)})
		if err != nil {
			return err
		}
		c := &store.Certificate{Serial: fmt.Sprintf("%016x", n), Username: user, Subject: user + "@example.com",
			KeyType: "ec-256", Encryption: "modern", IssuedBy: user, IssuedAt: now, NotAfter: now.Add(24 * time.Hour)}
		ev := &audit.Event{Time: now, Actor: user, Subject: user, Action: audit.ActionIssue, Outcome: audit.OutcomeSuccess,
			ClientIP: "127.0.0.1", UserAgent: "bench", RequestID: "r", Serial: c.Serial, Details: `{"ttl":"24h"}`}
		if err := db.RecordIssuance(ctx, reservation, c, ev); err != nil {
			return err
		}
		dl := *ev
		dl.Action, dl.Hash, dl.PrevHash, dl.ID = audit.ActionDownload, "", "", 0
		downloads.Add(1)
		go func() {
			defer downloads.Done()
			if err := db.AppendAuditDeferred(ctx, &dl); err != nil {
				b.Error(err)
			}
		}()
		return nil
	}
	commits0, unsynced0 := db.w.commits.Load(), db.w.unsynced.Load()
	cpu0 := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/clients + 1
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if err := issue(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	downloads.Wait()
	b.StopTimer()
	n := float64(clients * per)
	b.ReportMetric(float64(cpuTime()-cpu0)/n/1e3, "cpu-µs/issuance")
	b.ReportMetric(float64(db.w.commits.Load()-commits0)/n, "commits/issuance")
	b.ReportMetric(float64(db.w.unsynced.Load()-unsynced0)/n, "unsynced_commits/issuance")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
