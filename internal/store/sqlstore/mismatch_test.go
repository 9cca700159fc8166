package sqlstore_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/certportal/certportal/internal/store/postgres"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/store/sqlstore"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fixture is a repeat run's store at some scale: vault cache rows
// 0..vault-1 (revoked when i%100 = 0, a CA when i%10000 = 0, a server
// certificate when i%1000 = 500), inventory rows for 0..held-1 with the
// cache's revocation state (a CA's row unrevoked: a mismatch were CAs not
// left out), and expired inventory rows Vault no longer holds up to
// inventory rows in all (revoked when i%100 = 0). With mixed, each way of
// differing is added too: Vault revoked where the inventory is not
// (i%997 = 3) and the other way round (i%991 = 7). Serials are scattered
// over the key space (i times an odd constant, mod 2^32), as Vault's are;
// the expired rows' have five groups, so they never meet those.
type fixture struct {
	vault, held, inventory int
	mixed                  bool
}

func (f fixture) statements(pg bool) []string {
	hash := `(i * 2654435761) % 4294967296`
	serial := `printf('%02x:%02x:%02x:%02x', (h >> 24) & 255, (h >> 16) & 255, (h >> 8) & 255, h & 255)`
	expired := `printf('ee:00:%02x:%02x:%02x', i >> 16, (i >> 8) & 255, i & 255)`
	series := func(from, to string) string {
		return `(WITH RECURSIVE n(i) AS (SELECT ` + from + ` UNION ALL SELECT i + 1 FROM n WHERE i < ` + to + `) SELECT i FROM n)`
	}
	// 2026-01-01, 2026-01-31, 2025-01-01, 2025-04-01 (SQLite: milliseconds).
	now, notAfter, old, oldNotAfter := `1767225600000`, `1769817600000`, `1735689600000`, `1743465600000`
	if pg {
		hash = `(i::bigint * 2654435761) % 4294967296`
		serial = `format('%s:%s:%s:%s', lpad(to_hex((h >> 24) & 255), 2, '0'), lpad(to_hex((h >> 16) & 255), 2, '0'),
			lpad(to_hex((h >> 8) & 255), 2, '0'), lpad(to_hex(h & 255), 2, '0'))`
		expired = `format('ee:00:%s:%s:%s', lpad(to_hex(i >> 16), 2, '0'), lpad(to_hex((i >> 8) & 255), 2, '0'), lpad(to_hex(i & 255), 2, '0'))`
		series = func(from, to string) string { return `generate_series(` + from + `, ` + to + `) AS n(i)` }
		now, notAfter, old, oldNotAfter = `timestamptz '2026-01-01Z'`, `timestamptz '2026-01-31Z'`, `timestamptz '2025-01-01Z'`, `timestamptz '2025-04-01Z'`
	}
	vaultRevoked, inventoryRevoked := `i % 100 = 0`, `i % 100 = 0 AND i % 10000 <> 0`
	if f.mixed {
		vaultRevoked += ` OR i % 997 = 3`
		inventoryRevoked = `(` + inventoryRevoked + `) OR i % 991 = 7`
	}
	hashed := func(from, to string) string {
		return `(SELECT i, ` + hash + ` AS h FROM ` + series(from, to) + `) AS x`
	}
	return []string{
		`INSERT INTO vault_certs(serial, subject, not_after, revoked, kind)
			SELECT ` + serial + `, 'user' || i, ` + notAfter + `, ` + vaultRevoked + `,
				CASE WHEN i % 10000 = 0 THEN 'ca' WHEN i % 1000 = 500 THEN 'server' ELSE 'client' END
			FROM ` + hashed("0", num(f.vault-1)),
		`INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after, revoked_at)
			SELECT ` + serial + `, 'user' || i, 'user' || i || '@example.com', 'ec-256', 'modern', 'user' || i, ` + now + `, ` + notAfter + `,
				CASE WHEN ` + inventoryRevoked + ` THEN ` + now + ` END
			FROM ` + hashed("0", num(f.held-1)),
		`INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after, revoked_at)
			SELECT ` + expired + `, 'old' || i, 'old' || i || '@example.com', 'ec-256', 'modern', 'old', ` + old + `, ` + oldNotAfter + `,
				CASE WHEN i % 100 = 0 THEN ` + oldNotAfter + ` END
			FROM ` + series("1", num(f.inventory-f.held)),
	}
}

func num(n int) string { return strconv.Itoa(n) }

// fill writes f into a migrated store's database in one transaction.
func (f fixture) fill(tb testing.TB, raw *sql.DB, pg bool) {
	tb.Helper()
	began := time.Now()
	tx, err := raw.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	for _, st := range f.statements(pg) {
		if _, err := tx.Exec(st); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("fixture %+v written in %s", f, time.Since(began).Round(time.Millisecond))
}

// openSQLite is a migrated SQLite store and a second handle on its file
// for the SQL the store does not run. The portal never runs ANALYZE, so
// neither does any test here: the planner works without statistics, as
// in production.
func openSQLite(tb testing.TB) (*sqlite.DB, *sql.DB) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "mismatch.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { raw.Close() })
	return db, raw
}

func openPostgres(tb testing.TB) (*postgres.DB, *sql.DB) {
	tb.Helper()
	dsn := pgtest.NewDatabase(tb, pgtest.Start(tb))
	db, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	raw, err := sql.Open("pgx", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { raw.Close() })
	return db, raw
}

// TestMismatchCandidatesPlans: on a store of some size, with statistics
// as each database has them in production (none in SQLite, autovacuum's
// ANALYZE in PostgreSQL), both halves of MismatchCandidates are walks of
// their partial indexes with an index lookup per row, never a scan of a
// table, and in SQLite merged without a sort, under PostgreSQL's custom
// and generic plans alike; and they give what the one join over the whole
// cache gave, page by page.
func TestMismatchCandidatesPlans(t *testing.T) {
	f := fixture{vault: 20_000, held: 19_800, inventory: 100_000, mixed: true}
	indexes := []string{"vault_certs_revoked", "certificates_revoked", "vault_certs_unrevoked"}
	t.Run("sqlite", func(t *testing.T) {
		db, raw := openSQLite(t)
		f.fill(t, raw, false)
		plan := sqlitePlan(t, raw, sqlstore.MismatchCandidatesSQL(db.Store), "", 1000)
		text := strings.Join(plan, "\n")
		t.Logf("plan:\n%s", text)
		for _, line := range plan {
			if strings.HasPrefix(line, "SCAN ") || strings.Contains(line, "TEMP B-TREE") {
				t.Errorf("plan line %q: a scan or a sort", line)
			}
		}
		for _, index := range indexes {
			if !regexp.MustCompile(`\b` + index + `\b`).MatchString(text) {
				t.Errorf("plan does not use %s", index)
			}
		}
		compareWithOld(t, db.Store, raw, false)
	})
	t.Run("postgres", func(t *testing.T) {
		db, raw := openPostgres(t)
		f.fill(t, raw, true)
		if _, err := raw.Exec(`ANALYZE`); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			conn, err := raw.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var plan []string
			for _, st := range []string{`SET plan_cache_mode = ` + mode,
				`PREPARE ` + mode + `(text, bigint) AS ` + sqlstore.Rebind(sqlstore.MismatchCandidatesSQL(db.Store)),
				`EXPLAIN (COSTS OFF) EXECUTE ` + mode + `('', 1000)`, `DEALLOCATE ` + mode, `RESET plan_cache_mode`} {
				rows, err := conn.QueryContext(ctx, st)
				if err != nil {
					t.Fatalf("%s: %v", st, err)
				}
				for rows.Next() {
					var line string
					if err := rows.Scan(&line); err != nil {
						t.Fatal(err)
					}
					plan = append(plan, line)
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				rows.Close()
			}
			conn.Close()
			text := strings.Join(plan, "\n")
			t.Logf("%s:\n%s", mode, text)
			if strings.Contains(text, "Seq Scan") {
				t.Errorf("%s: a table scan", mode)
			}
			for _, index := range indexes {
				if !regexp.MustCompile(`\b` + index + `\b`).MatchString(text) {
					t.Errorf("%s: plan does not use %s", mode, index)
				}
			}
		}
		compareWithOld(t, db.Store, raw, true)
	})
}

// compareWithOld walks MismatchCandidates in pages of 1000 and of 7 and
// the old join in pages of 1000, and wants the same serials, some of each
// way of differing.
func compareWithOld(t *testing.T, s *sqlstore.Store, raw *sql.DB, pg bool) {
	t.Helper()
	ctx := context.Background()
	old := sqlstore.OldMismatchCandidatesSQL
	if pg {
		old = sqlstore.Rebind(old)
	}
	var want []string
	for after := ""; ; {
		rows, err := raw.QueryContext(ctx, old, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		n := 0
		for rows.Next() {
			vals := make([]any, len(cols))
			for i := range vals {
				vals[i] = new(sql.RawBytes)
			}
			if err := rows.Scan(vals...); err != nil {
				t.Fatal(err)
			}
			after = string(*vals[0].(*sql.RawBytes))
			want = append(want, after)
			n++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if n < 1000 {
			break
		}
	}
	revoked := 0
	for _, limit := range []int{1000, 7} {
		var got []string
		revoked = 0
		for after := ""; ; {
			page, err := s.MismatchCandidates(ctx, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range page {
				got = append(got, c.Serial)
				if c.Revoked() {
					revoked++
				}
			}
			if len(page) < limit {
				break
			}
			after = page[len(page)-1].Serial
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("pages of %d:\n got %v\nwant %v", limit, got, want)
		}
	}
	if revoked == 0 || revoked == len(want) {
		t.Fatalf("%d candidates, %d of them revoked in the inventory: want some of each way", len(want), revoked)
	}
	t.Logf("%d candidates, %d revoked in the inventory only, as the old join", len(want), revoked)
}

// BenchmarkMismatchCandidates walks MismatchCandidates to its end in
// pages of 1,000, as confirmMismatches does, on a repeat run's SQLite
// store with nothing to find: 100,000 certificates in the Vault cache (1%
// revoked), 1,000,000 inventory rows (99,000 of those, 901,000 expired,
// 1% of all revoked). "old join" is the query before the split, for
// comparison in the same run. The load average is logged.
func BenchmarkMismatchCandidates(b *testing.B) {
	ctx := context.Background()
	db, raw := openSQLite(b)
	fixture{vault: 100_000, held: 99_000, inventory: 1_000_000}.fill(b, raw, false)
	walk := func(b *testing.B, page func(after string) ([]string, error)) {
		for b.Loop() {
			n := 0
			for after := ""; ; {
				serials, err := page(after)
				if err != nil {
					b.Fatal(err)
				}
				n += len(serials)
				if len(serials) < 1000 {
					break
				}
				after = serials[len(serials)-1]
			}
			if n != 0 {
				b.Fatalf("%d candidates, want none", n)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/walk")
		b.Logf("load average %s", loadAverage())
	}
	b.Run("old join", func(b *testing.B) {
		walk(b, func(after string) ([]string, error) {
			rows, err := raw.QueryContext(ctx, sqlstore.OldMismatchCandidatesSQL, after, 1000)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			var out []string
			for rows.Next() {
				out = append(out, "") // none expected; the walk fails on any
			}
			return out, rows.Err()
		})
	})
	b.Run("two halves", func(b *testing.B) {
		walk(b, func(after string) ([]string, error) {
			page, err := db.MismatchCandidates(ctx, after, 1000)
			var out []string
			for _, c := range page {
				out = append(out, c.Serial)
			}
			return out, err
		})
	})
}

func loadAverage() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(raw)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// TestVaultCertStatesPlan: every run's merge reads the cache from the
// covering index vault_certs_states alone, not the table's rows (SQLite:
// 107 against 176 ms for 100,000 rows).
func TestVaultCertStatesPlan(t *testing.T) {
	f := fixture{vault: 20_000, held: 19_800, inventory: 100_000, mixed: true}
	_, raw := openSQLite(t)
	f.fill(t, raw, false)
	plan := sqlitePlan(t, raw, sqlstore.VaultCertStatesSQL, "", 1000)
	if len(plan) != 1 || !strings.Contains(plan[0], "USING COVERING INDEX vault_certs_states") {
		t.Errorf("plan %q; want one search of the covering index vault_certs_states", plan)
	}
}

// sqlitePlan is SQLite's EXPLAIN QUERY PLAN of query with args: one detail
// line per step.
func sqlitePlan(t *testing.T, raw *sql.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := raw.Query(`EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}
