package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// reconcileBatch rows are written per statement (one TextList parameter or
// one multi-row INSERT).
const reconcileBatch = 500

func (s *Store) VaultCerts(ctx context.Context, after string, limit int) ([]store.VaultCert, error) {
	rows, err := s.conn().query(ctx, `SELECT serial, subject, not_after, revoked, kind FROM vault_certs
		WHERE serial > ? ORDER BY serial LIMIT ?`, after, limit)
	out, err := collect(rows, err, func(r scanner) (store.VaultCert, error) {
		var c store.VaultCert
		err := r.Scan(&c.Serial, &c.Subject, timeCol{&c.NotAfter}, &c.Revoked, &c.Kind)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("vault certs: %w", err)
	}
	return out, nil
}

func (s *Store) VaultCertStates(ctx context.Context, after string, limit int) ([]store.VaultCertState, error) {
	rows, err := s.conn().query(ctx, vaultCertStatesSQL, after, limit)
	out, err := collect(rows, err, func(r scanner) (store.VaultCertState, error) {
		var c store.VaultCertState
		err := r.Scan(&c.Serial, &c.Revoked, &c.Kind)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("vault cert states: %w", err)
	}
	return out, nil
}

// vaultCertStatesSQL reads the covering index vault_certs_states alone.
const vaultCertStatesSQL = `SELECT serial, revoked, kind FROM vault_certs WHERE serial > ? ORDER BY serial LIMIT ?`

// PutVaultCerts writes all of certs in one transaction (one commit: a
// first run puts 100,000 rows), reconcileBatch rows a statement.
func (s *Store) PutVaultCerts(ctx context.Context, certs []store.VaultCert) error {
	if len(certs) == 0 {
		return nil
	}
	err := s.write(ctx, func(x q) error {
		for rest := certs; len(rest) > 0; {
			batch := rest[:min(len(rest), reconcileBatch)]
			rest = rest[len(batch):]
			var query strings.Builder
			query.WriteString(`INSERT INTO vault_certs(serial, subject, not_after, revoked, kind) VALUES`)
			args := make([]any, 0, 5*len(batch))
			for i, c := range batch {
				if i > 0 {
					query.WriteString(",")
				}
				query.WriteString("(?,?,?,?,?)")
				args = append(args, c.Serial, cleanText(c.Subject), s.d.Time(c.NotAfter), c.Revoked, c.Kind)
			}
			query.WriteString(` ON CONFLICT(serial) DO UPDATE SET subject = excluded.subject, not_after = excluded.not_after,
				revoked = excluded.revoked, kind = excluded.kind`)
			if _, err := x.exec(ctx, query.String(), args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put vault certs: %w", err)
	}
	return nil
}

func (s *Store) DeleteVaultCerts(ctx context.Context, serials []string) error {
	return s.eachSerialBatch(ctx, serials, "delete vault certs", func(x q, arg any) error {
		_, err := x.exec(ctx, `DELETE FROM vault_certs WHERE serial IN (SELECT value FROM `+s.d.TextList("l")+`)`, arg)
		return err
	})
}

func (s *Store) SetVaultCertsRevoked(ctx context.Context, serials []string, revoked bool) error {
	return s.eachSerialBatch(ctx, serials, "revoke vault certs", func(x q, arg any) error {
		_, err := x.exec(ctx, `UPDATE vault_certs SET revoked = ? WHERE serial IN (SELECT value FROM `+s.d.TextList("l")+`)`, revoked, arg)
		return err
	})
}

func (s *Store) eachSerialBatch(ctx context.Context, serials []string, op string, fn func(q, any) error) error {
	for len(serials) > 0 {
		batch := serials[:min(len(serials), reconcileBatch)]
		serials = serials[len(batch):]
		if err := s.write(ctx, func(x q) error { return fn(x, s.d.TextListArg(batch)) }); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

const runColumns = `id, by_user, state, started_at, finished_at, error, listed, to_read, done_read, vault_reads,
	vault_total, inventory_total, vault_only, inventory_only, state_mismatch, known, results_run, expired_tidied`

func (s *Store) StartReconcileRun(ctx context.Context, r *store.ReconcileRun) (int64, error) {
	r.State = store.RunRunning
	var id int64
	err := s.write(ctx, func(x q) error {
		// The caller holds the reconcile lock: a run still marked running
		// was cut off (a replica killed mid-run) and will never finish.
		if _, err := x.exec(ctx, `UPDATE reconcile_runs SET state = ?, error = ? WHERE state = ?`,
			store.RunFailed, store.RunInterrupted, store.RunRunning); err != nil {
			return err
		}
		return x.queryRow(ctx, `INSERT INTO reconcile_runs(by_user, state, started_at, error) VALUES(?,?,?,'') RETURNING id`,
			cleanText(r.By), store.RunRunning, s.d.Time(r.StartedAt)).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("start reconcile run: %w", err)
	}
	return id, nil
}

func (s *Store) UpdateReconcileRun(ctx context.Context, r *store.ReconcileRun) error {
	err := s.write(ctx, func(x q) error {
		_, err := x.exec(ctx, `UPDATE reconcile_runs SET state = ?, finished_at = ?, error = ?, listed = ?, to_read = ?, done_read = ?,
			vault_reads = ?, vault_total = ?, inventory_total = ?, vault_only = ?, inventory_only = ?, state_mismatch = ?, known = ?,
			results_run = ?, expired_tidied = ? WHERE id = ?`, r.State, s.nullTime(r.FinishedAt), cleanText(r.Error), r.Listed, r.ToRead, r.Read,
			r.VaultReads, r.VaultTotal, r.InventoryTotal, r.VaultOnly, r.InventoryOnly, r.StateMismatch, r.Known, r.ResultsRun, r.ExpiredTidied, r.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("update reconcile run: %w", err)
	}
	return nil
}

func (s *Store) ClaimInventoryChanges(ctx context.Context) (bool, error) {
	var changed bool
	err := s.write(ctx, func(x q) error {
		if s.d.LockInventory != "" {
			if _, err := x.exec(ctx, s.d.LockInventory); err != nil {
				return err
			}
		}
		if err := x.queryRow(ctx, `SELECT inventory_changed FROM reconcile_state WHERE id = 1`).Scan(&changed); err != nil {
			return err
		}
		if !changed {
			return nil
		}
		_, err := x.exec(ctx, `UPDATE reconcile_state SET inventory_changed = ? WHERE id = 1`, false)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("claim inventory changes: %w", err)
	}
	return changed, nil
}

// resultsOf is the run whose entries run ? shows (its own unless it kept
// an earlier run's); NULL for no such run.
const resultsOf = `(SELECT CASE WHEN results_run <> 0 THEN results_run ELSE id END FROM reconcile_runs WHERE id = ?)`

func scanRun(r scanner) (*store.ReconcileRun, error) {
	var x store.ReconcileRun
	err := r.Scan(&x.ID, &x.By, &x.State, timeCol{&x.StartedAt}, timeCol{&x.FinishedAt}, &x.Error, &x.Listed, &x.ToRead, &x.Read,
		&x.VaultReads, &x.VaultTotal, &x.InventoryTotal, &x.VaultOnly, &x.InventoryOnly, &x.StateMismatch, &x.Known, &x.ResultsRun,
		&x.ExpiredTidied)
	if err != nil {
		return nil, err
	}
	return &x, nil
}

func (s *Store) ReconcileRuns(ctx context.Context) (latest, lastDone *store.ReconcileRun, err error) {
	get := func(where string) (*store.ReconcileRun, error) {
		r, err := scanRun(s.conn().queryRow(ctx, `SELECT `+runColumns+` FROM reconcile_runs `+where+` ORDER BY id DESC LIMIT 1`))
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		return r, err
	}
	if latest, err = get(""); err != nil {
		return nil, nil, fmt.Errorf("reconcile runs: %w", err)
	}
	if latest == nil || latest.State == store.RunDone {
		return latest, latest, nil
	}
	if lastDone, err = get(`WHERE state = '` + store.RunDone + `'`); err != nil {
		return nil, nil, fmt.Errorf("reconcile runs: %w", err)
	}
	return latest, lastDone, nil
}

// FillReconcileResults is three INSERT … SELECT statements and a count:
// the anti-joins of the cache and the inventory run in the database, so a
// difference of 200,000 rows costs no memory here. Inventory rows Vault
// does not hold that expired by at are only counted: Vault's tidy removes
// expired certificates, so at scale they are nearly the whole inventory
// (900,000 of a million rows), and writing them as entries was most of a
// run's time for nothing an auditor acts on.
func (s *Store) FillReconcileResults(ctx context.Context, runID int64, at time.Time) (store.ReconcileCounts, error) {
	var c store.ReconcileCounts
	err := s.write(ctx, func(x q) error {
		fromVault := `INSERT INTO reconcile_results(run_id, grp, serial, subject, not_after, revoked)
			SELECT CAST(? AS BIGINT), CAST(? AS TEXT), v.serial, v.subject, v.not_after, v.revoked FROM vault_certs v
			WHERE v.kind = ? AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.serial = v.serial)`
		res, err := x.exec(ctx, fromVault, runID, store.ReconcileVaultOnly, store.VaultKindClient)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		c.VaultOnly = int(n)
		if res, err = x.exec(ctx, fromVault, runID, store.ReconcileKnown, store.VaultKindServer); err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		c.Known = int(n)
		const notInVault = `NOT EXISTS (SELECT 1 FROM vault_certs v WHERE v.serial = c.serial AND v.kind <> ?)`
		res, err = x.exec(ctx, `INSERT INTO reconcile_results(run_id, grp, serial, subject, not_after, revoked)
			SELECT CAST(? AS BIGINT), CAST(? AS TEXT), c.serial, c.subject, c.not_after, c.revoked_at IS NOT NULL FROM certificates c
			WHERE c.not_after > ? AND `+notInVault, runID, store.ReconcileInventoryOnly, s.d.Time(at), store.VaultKindCA)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		c.InventoryOnly = int(n)
		// The expired rows less those Vault holds: a scan of the inventory
		// and one probe per cached certificate, not one probe per expired
		// row (an anti-join over 980,000 rows made a first run's fill 3x
		// slower than writing them all had been).
		var expired, held int
		if err := x.queryRow(ctx, `SELECT COUNT(*) FROM certificates WHERE not_after <= ?`, s.d.Time(at)).Scan(&expired); err != nil {
			return err
		}
		if err := x.queryRow(ctx, `SELECT COUNT(*) FROM vault_certs v JOIN certificates c ON c.serial = v.serial
			WHERE v.kind <> ? AND c.not_after <= ?`, store.VaultKindCA, s.d.Time(at)).Scan(&held); err != nil {
			return err
		}
		c.ExpiredTidied = expired - held
		if err := x.queryRow(ctx, `SELECT COUNT(*) FROM vault_certs WHERE kind <> ?`, store.VaultKindCA).Scan(&c.VaultTotal); err != nil {
			return err
		}
		return x.queryRow(ctx, `SELECT COUNT(*) FROM certificates`).Scan(&c.InventoryTotal)
	})
	if err != nil {
		return c, fmt.Errorf("fill reconcile results: %w", err)
	}
	return c, nil
}

// mismatchCandidatesSQL is MismatchCandidates' query. One join filtered on
// v.revoked <> (c.revoked_at IS NOT NULL) walked every cached serial to
// find none (100,000 on a repeat run); this walks the two ways revocation
// can differ from the revoked side of each, in serial order (?1 the serial
// to start after), and merges them, so that a walk costs a lookup per
// revoked certificate:
//   - Vault revoked, the inventory not: vault_certs_revoked, each looked
//     up among the inventory's rows;
//   - the inventory revoked, Vault not: certificates_revoked, each looked
//     up in vault_certs_unrevoked.
//
// The halves are disjoint (the inventory row active in one, revoked in the
// other), so UNION ALL gives exactly the join's rows. In the second half
// the lookup is a correlated scalar subquery, which PostgreSQL keeps a
// lookup per row (a join it hashes, scanning the whole cache, once it
// expects a few thousand revoked rows), and the row is read in full (c)
// only when found: r is then read from its index alone. Each part spells
// its index's predicate out, the CA kind as a literal: a planner uses a
// partial index only where it sees the query implies its WHERE. SQLite,
// without statistics here, is told the index (IndexHint) and the join
// order (CROSS JOIN). ORDER BY 1, and each half's first column the serial
// of its driving index (equal to c.serial): SQLite orders a compound
// SELECT by result column only, and then merges the halves in index
// order instead of sorting them.
func (s *Store) mismatchCandidatesSQL() string {
	ca := `'` + store.VaultKindCA + `'`
	rest, ok := strings.CutPrefix(certColumns, "serial,")
	if !ok {
		panic("sqlstore: certColumns must start with serial")
	}
	rest = prefixed("c.", rest)
	return `SELECT v.serial, ` + rest + ` FROM vault_certs v` + s.d.IndexHint("vault_certs_revoked") + ` CROSS JOIN certificates c
	WHERE v.revoked AND v.kind <> ` + ca + ` AND v.serial > ?1 AND c.serial = v.serial AND c.revoked_at IS NULL
	UNION ALL
	SELECT r.serial, ` + rest + ` FROM certificates r` + s.d.IndexHint("certificates_revoked") + ` CROSS JOIN certificates c
	WHERE r.revoked_at IS NOT NULL AND r.serial > ?1
		AND (SELECT 1 FROM vault_certs v` + s.d.IndexHint("vault_certs_unrevoked") + `
			WHERE v.serial = r.serial AND NOT v.revoked AND v.kind <> ` + ca + `) = 1
		AND c.serial = r.serial
	ORDER BY 1 LIMIT ?2`
}

func (s *Store) MismatchCandidates(ctx context.Context, after string, limit int) ([]*store.Certificate, error) {
	rows, err := s.conn().query(ctx, s.mismatchCandidatesSQL(), after, limit)
	out, err := collect(rows, err, scanCert)
	if err != nil {
		return nil, fmt.Errorf("mismatch candidates: %w", err)
	}
	return out, nil
}

func (s *Store) AddReconcileResults(ctx context.Context, runID int64, group string, entries []store.ReconcileEntry) error {
	for len(entries) > 0 {
		batch := entries[:min(len(entries), reconcileBatch)]
		entries = entries[len(batch):]
		query := `INSERT INTO reconcile_results(run_id, grp, serial, subject, not_after, revoked) VALUES`
		args := make([]any, 0, 6*len(batch))
		for i, e := range batch {
			if i > 0 {
				query += ","
			}
			query += "(?,?,?,?,?,?)"
			args = append(args, runID, group, e.Serial, cleanText(e.Subject), s.d.Time(e.NotAfter), e.Revoked)
		}
		query += ` ON CONFLICT DO NOTHING`
		if err := s.write(ctx, func(x q) error {
			_, err := x.exec(ctx, query, args...)
			return err
		}); err != nil {
			return fmt.Errorf("add reconcile results: %w", err)
		}
	}
	return nil
}

func (s *Store) ReconcileResults(ctx context.Context, runID int64, group, after string, limit int) ([]store.ReconcileEntry, error) {
	rows, err := s.conn().query(ctx, `SELECT serial, subject, not_after, revoked FROM reconcile_results
		WHERE run_id = `+resultsOf+` AND grp = ? AND serial > ? ORDER BY serial LIMIT ?`, runID, group, after, limit)
	out, err := collect(rows, err, func(r scanner) (store.ReconcileEntry, error) {
		var e store.ReconcileEntry
		err := r.Scan(&e.Serial, &e.Subject, timeCol{&e.NotAfter}, &e.Revoked)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile results: %w", err)
	}
	return out, nil
}

func (s *Store) PruneReconcileRuns(ctx context.Context, keep int64) error {
	err := s.write(ctx, func(x q) error {
		// Two ranges, not run_id <> ?, which neither database answers from
		// the primary key: with a kept run's results the table holds
		// entries a repeat run must not scan. A keep that is not a run
		// deletes no results.
		var results int64
		err := x.queryRow(ctx, `SELECT CASE WHEN results_run <> 0 THEN results_run ELSE id END FROM reconcile_runs WHERE id = ?`, keep).Scan(&results)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			if _, err := x.exec(ctx, `DELETE FROM reconcile_results WHERE run_id < ? OR run_id > ?`, results, results); err != nil {
				return err
			}
		}
		_, err = x.exec(ctx, `DELETE FROM reconcile_runs WHERE id < ?`, keep)
		return err
	})
	if err != nil {
		return fmt.Errorf("prune reconcile runs: %w", err)
	}
	return nil
}

// cleanText replaces what a PostgreSQL text column cannot hold (NUL,
// invalid UTF-8; a certificate's CN is whatever its requester wrote) with
// U+FFFD, in both stores alike.
func cleanText(v string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(v, "\uFFFD"), "\x00", "\uFFFD")
}

// prefixed qualifies each column of a column list with p ("c.").
func prefixed(p, columns string) string {
	cols := strings.Split(columns, ",")
	for i, c := range cols {
		cols[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}
