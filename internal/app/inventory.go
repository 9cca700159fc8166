package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/store"
)

// refreshInventoryMetrics counts the inventory for the certificate gauges
// at start and then every interval, until ctx ends. The counts are made in
// SQL (store.ExpiryStats), never by loading rows, and on a timer rather
// than per scrape, so neither the scrape rate nor the number of scrapers
// moves the database's load. A failed count keeps the last values (the
// refresh timestamp shows their age) and is counted.
func refreshInventoryMetrics(ctx context.Context, st store.Certificates, m *metrics.Metrics, every time.Duration, log *slog.Logger) {
	if every <= 0 {
		every = time.Minute // a Config not made by config.Load
	}
	windows := metrics.ExpiryDurations()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		// Bounded, so a stuck database cannot pile up refreshes.
		cctx, cancel := context.WithTimeout(ctx, max(every, 30*time.Second))
		now := time.Now()
		s, err := st.ExpiryStats(cctx, now, windows)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			m.InventoryFailure()
			log.Warn("count certificates for the metrics", "err", err)
		default:
			m.Inventory(s, now)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
