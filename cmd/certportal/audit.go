package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

// runAudit is `certportal audit verify`: it walks the hash chain from the
// first event and exits non-zero at the first bad row, naming it.
func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: certportal audit verify [-db DSN]")
		return errUsage
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := getenv("CERTPORTAL_DB")
	if def == "" {
		def = "certportal.db"
	}
	dsn := fs.String("db", def, "SQLite file or postgres:// DSN (CERTPORTAL_DB)")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	st, err := app.OpenStore(ctx, *dsn)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	var v audit.Verifier
	if err := st.StreamAudit(ctx, store.AuditFilter{}, v.Check); err != nil {
		return &exitError{code: 1, err: fmt.Errorf("audit verify: %w (%d events before it verified)", err, v.Count)}
	}
	fmt.Fprintf(stdout, "audit chain verified: %d events, head %s\n", v.Count, v.Head())
	return nil
}
