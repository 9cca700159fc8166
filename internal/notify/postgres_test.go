package notify_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/notify"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/postgres"
	"github.com/certportal/certportal/internal/testenv/pgtest"
	"github.com/certportal/certportal/internal/testenv/smtptest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestTwoReplicasSendEachReminderOnce: two runners, each with its own
// connection pool on one PostgreSQL database (two portal replicas), run
// their passes at the same moment, twice; every reminder arrives once.
func TestTwoReplicasSendEachReminderOnce(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t, pgtest.Start(t))
	var replicas []store.Store
	for i := 0; i < 2; i++ {
		db, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		replicas = append(replicas, db)
	}
	srv := smtptest.Start(t)
	clk := &clock{t: t0}
	const certs = 30
	for i := 0; i < certs; i++ {
		insert(t, replicas[0], fmt.Sprintf("20:%02x", i), fmt.Sprintf("user%02d", i), t0, 90*24*time.Hour)
	}
	clk.Set(t0.Add(84 * 24 * time.Hour)) // 6 days left: the 168h reminder
	var runners []*notify.Runner
	for _, st := range replicas {
		runners = append(runners, newRunner(t, st, clk, notify.Options{Email: smtpSender(t, srv)}))
	}
	for pass := 0; pass < 2; pass++ {
		var wg sync.WaitGroup
		results := make([]notify.Result, len(runners))
		for i, r := range runners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := r.RunOnce(ctx)
				if err != nil {
					t.Error(err)
				}
				results[i] = res
			}()
		}
		wg.Wait()
		t.Logf("pass %d: %v / %v", pass, results[0], results[1])
	}
	mails := srv.Mails()
	seen := map[string]int{}
	for _, m := range mails {
		seen[m.To[0]]++
	}
	if len(mails) != certs || len(seen) != certs {
		t.Fatalf("%d messages to %d addresses, want %d each once: %v", len(mails), len(seen), certs, seen)
	}
	if events := verifyChain(t, replicas[1]); len(events) != certs {
		t.Fatalf("%d events, want %d", len(events), certs)
	}
}
