package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

// runAudit is `certportal audit verify`: it walks the hash chain from the
// first event and exits non-zero at the first bad row, naming it.
func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: certportal audit verify [-db DSN] [-anchor ID:HASH]")
		return errUsage
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := getenv("CERTPORTAL_DB")
	if def == "" {
		def = "certportal.db"
	}
	dsn := fs.String("db", def, "SQLite file or postgres:// DSN (CERTPORTAL_DB)")
	anchorFlag := fs.String("anchor", "", "ID:HASH printed by an earlier run: that row must still be there with that hash (finds rows cut from the end, and a chain rewritten after it)")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	var anchor *anchorRow
	if *anchorFlag != "" {
		a, err := parseAnchor(*anchorFlag)
		if err != nil {
			fmt.Fprintf(stderr, "audit verify: -anchor: %v\n", err)
			return errUsage
		}
		anchor = a
	}
	// Opening a SQLite path creates the file: verifying a mistyped path
	// would then report an empty, "verified" trail. Nothing there is an
	// error, and nothing is created.
	if !app.IsPostgres(*dsn) {
		if _, err := os.Stat(*dsn); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("audit verify: no database at %s (nothing was created): %w", *dsn, err)}
		}
	}
	st, err := app.OpenStore(ctx, *dsn)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	var v audit.Verifier
	var last int64
	check := func(e *audit.Event) error {
		if err := v.Check(e); err != nil {
			return err
		}
		last = e.ID
		if anchor != nil && e.ID == anchor.id {
			anchor.seen = true
			if e.Hash != anchor.hash {
				return fmt.Errorf("%w at row %d: its hash is not the anchor's (the chain was rewritten from here or before)", audit.ErrBroken, e.ID)
			}
		}
		return nil
	}
	if err := st.StreamAudit(ctx, store.AuditFilter{}, check); err != nil {
		return &exitError{code: 1, err: fmt.Errorf("audit verify: %w (%d events before it verified)", err, v.Count)}
	}
	if anchor != nil && !anchor.seen {
		return &exitError{code: 1, err: fmt.Errorf("audit verify: %w at row %d: the anchor's row is gone, the trail ends at row %d (rows were cut from the end)", audit.ErrBroken, anchor.id, last)}
	}
	fmt.Fprintf(stdout, "audit chain verified: %d events, head %s\n", v.Count, v.Head())
	if last > 0 {
		fmt.Fprintf(stdout, "anchor for the next run: -anchor %d:%s\n", last, v.Head())
	}
	return nil
}

// anchorRow is a row an earlier verify saw: it must still be there, unchanged.
type anchorRow struct {
	id   int64
	hash string
	seen bool
}

func parseAnchor(s string) (*anchorRow, error) {
	idStr, hash, ok := strings.Cut(s, ":")
	id, err := strconv.ParseInt(idStr, 10, 64)
	if !ok || err != nil || id < 1 || len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("%q: want ID:HASH as printed by an earlier verify (a row id and 64 hex digits)", s)
	}
	return &anchorRow{id: id, hash: hash}, nil
}
