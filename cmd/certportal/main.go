// Command certportal turns a Vault login into a browser-ready client certificate.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "certportal:", err)
		}
		os.Exit(exitCode(err))
	}
}

// errUsage marks an error whose message was already printed with the usage text.
var errUsage = errors.New("usage")

// exitError carries a specific exit status (e.g. `audit verify` finding a bad row).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

// command is one subcommand; each lives in its own file.
type command struct {
	name  string
	short string
	run   func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the portal", runServe},
		{"setup", "bootstrap Vault (PKI, roles, policies, userpass); idempotent", runSetup},
		{"nginx-config", "print an Nginx server block that protects a path with portal certificates", runNginxConfig},
		{"nginx-certs", "write Nginx's server certificate, client CA chain and CRLs from Vault; --watch keeps them fresh", runNginxCerts},
		{"rotate-secret-id", "replace the portal's AppRole secret id file and destroy the old secret id", runRotateSecretID},
		{"healthcheck", "exit 0 when the portal's /healthz (or -url) answers 200; for container HEALTHCHECKs and probes", runHealthcheck},
		{"audit", "audit verify: check the audit trail's hash chain", runAudit},
		{"notify", "notify --once: send the expiry reminders that are due, then exit", runNotify},
		{"offboard", "offboard --once [--dry-run|--confirm]: revoke the certificates of users Vault no longer admits", runOffboard},
		{"version", "print the version", runVersion},
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], getenv, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "certportal: unknown command %q\n\n", args[0])
	usage(stderr)
	return errUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: certportal <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.short)
	}
	fmt.Fprintln(w, "\nRun 'certportal <command> -h' for the flags of one command.")
}
