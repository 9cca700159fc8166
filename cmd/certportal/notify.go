package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/config"
)

// runNotify is `certportal notify --once`: one reminder pass with serve's
// settings, for operators who schedule it with cron or a Kubernetes
// CronJob instead of (or beside) the scheduler inside serve. Its claims go
// through the same outbox, so it may run beside serve replicas.
func runNotify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	// --once comes first; everything after it is serve's flags.
	fs := flag.NewFlagSet("notify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	once := fs.Bool("once", false, "make one pass and exit (required: serve runs the scheduler itself)")
	var rest []string
	for i, a := range args {
		if a == "--once" || a == "-once" {
			rest = append(append(rest, args[:i]...), args[i+1:]...)
			*once = true
			break
		}
	}
	if !*once {
		if err := fs.Parse(args); err != nil {
			return errUsage
		}
		fmt.Fprintln(stderr, "usage: certportal notify --once [serve flags]\n\nserve sends reminders on its own; --once makes one pass (for cron) and exits.")
		return errUsage
	}
	cfg, err := config.Load(rest, getenv, stderr)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := newLogger(stderr, cfg.LogLevel)
	st, err := app.OpenStore(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer st.Close()
	var ident app.EntityReader
	if cfg.NotifyEmailMetadata != "" {
		// Owners' addresses come from their Vault entities.
		_, svc, err := app.ServiceIdentity(cfg, log)
		if err != nil {
			return err
		}
		ident = svc
	}
	r, err := app.BuildNotifier(cfg, st, ident, nil, log)
	if err != nil {
		return err
	}
	if r == nil {
		return errors.New("no reminder channel configured: set CERTPORTAL_SMTP_URL or CERTPORTAL_NOTIFY_WEBHOOK")
	}
	res, err := r.RunOnce(ctx)
	fmt.Fprintf(stdout, "reminders: %s\n", res)
	if err != nil {
		return fmt.Errorf("reminder pass: %w", err)
	}
	if res.Failed > 0 {
		return &exitError{code: 3, err: fmt.Errorf("%d reminders failed for good (see the log and the audit trail)", res.Failed)}
	}
	return nil
}
