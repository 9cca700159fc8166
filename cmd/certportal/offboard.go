package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/portal"
)

const offboardUsage = `usage: certportal offboard --once [--dry-run | --confirm [--by NAME]] [serve flags]

Runs one offboarding sweep with serve's settings (CERTPORTAL_* variables and
serve's flags): the active certificates of users Vault no longer has, whose
identity entity is disabled, or who lost the employee policy are revoked.
A sweep that would revoke too many at once, or sees an empty or unreadable
user list, holds (exit status 3) until --confirm.
  --dry-run   print what would be revoked; change nothing
  --confirm   revoke the list computed now, whatever the limits say
  --by NAME   who confirms, for the audit trail (default $USER)
  --wait D    how long to wait for a sweep running elsewhere (default 1m);
              after that the run does nothing and says so`

// runOffboard is `certportal offboard --once`. Its own flags are taken out
// of args; the rest are serve's, so cron runs it with serve's settings.
func runOffboard(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var once, dryRun, confirm bool
	wait := time.Minute
	by := getenv("USER")
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		switch name {
		case "once":
			once = true
		case "dry-run":
			dryRun = true
		case "confirm":
			confirm = true
		case "by":
			if !hasVal {
				if i+1 >= len(args) {
					fmt.Fprintln(stderr, "offboard: --by needs a name\n"+offboardUsage)
					return errUsage
				}
				i++
				val = args[i]
			}
			by = val
		case "wait":
			if !hasVal {
				if i+1 >= len(args) {
					fmt.Fprintln(stderr, "offboard: --wait needs a duration\n"+offboardUsage)
					return errUsage
				}
				i++
				val = args[i]
			}
			d, err := time.ParseDuration(val)
			if err != nil || d < 0 {
				fmt.Fprintf(stderr, "offboard: --wait %q: want a duration like 1m\n", val)
				return errUsage
			}
			wait = d
		case "h", "help":
			fmt.Fprintln(stderr, offboardUsage)
			return nil
		default:
			rest = append(rest, a)
		}
	}
	if !once || (dryRun && confirm) {
		fmt.Fprintln(stderr, offboardUsage)
		return errUsage
	}
	by = strings.TrimSpace(by)
	if confirm && (by == "" || len(by) > 64 || strings.ContainsAny(by, "<>\"\n\r\t")) {
		fmt.Fprintln(stderr, "offboard: --confirm needs who confirms: --by NAME (or $USER)")
		return errUsage
	}
	cfg, err := config.Load(rest, getenv, stderr)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := newLogger(stderr, cfg.LogLevel)
	svc, closeSvc, err := app.BuildService(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeSvc()
	mode := portal.OffboardGuarded
	switch {
	case dryRun:
		mode = portal.OffboardDryRun
	case confirm:
		mode = portal.OffboardConfirm
	}
	res, err := svc.Offboard(ctx, mode, by)
	// A sweep running elsewhere (serve, another replica) is waited for
	// rather than reported as a failure: an operator previewing or
	// confirming wants this run's answer.
	deadline := time.Now().Add(wait)
	for err == nil && res.Skipped && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		res, err = svc.Offboard(ctx, mode, by)
	}
	if res != nil {
		printOffboard(stdout, mode, res)
	}
	if err != nil {
		return err
	}
	switch {
	case res.Skipped && mode == portal.OffboardConfirm:
		return &exitError{code: 1, err: portal.ErrOffboardBusy}
	case res.Held && mode == portal.OffboardGuarded:
		return &exitError{code: 3, err: errors.New("offboard: sweep held: " + res.HeldWhy + "; check with --dry-run, then run with --confirm")}
	}
	return nil
}

func printOffboard(w io.Writer, mode portal.OffboardMode, res *portal.OffboardResult) {
	if res.Skipped {
		fmt.Fprintln(w, "another sweep holds the lock (another replica is sweeping); nothing done")
		return
	}
	verb := "revoke"
	switch {
	case mode == portal.OffboardDryRun:
		verb = "would revoke"
	case res.Held && mode != portal.OffboardConfirm:
		verb = "held, not revoked"
	}
	for _, u := range res.Users {
		fmt.Fprintf(w, "%s: %s: %d certificate(s) %s (%s: %s)\n", verb, u.Username, len(u.Serials), strings.Join(u.Serials, " "), u.Reason, u.Evidence)
	}
	fmt.Fprintf(w, "users in Vault: %d; users with active certificates: %d; to offboard: %d; revoked: %d; failed: %d; not checked: %d\n",
		res.Listed, res.ActiveUsers, len(res.Users), res.Revoked, res.Failed, res.CheckErrors)
	if res.Held {
		fmt.Fprintf(w, "held: %s\n", res.HeldWhy)
	}
}
