package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// runRotateSecretID replaces the portal's AppRole secret id: a new one from
// Vault goes into the secret id file (atomically, 0600), then the old one is
// destroyed. The portal re-reads the file at every login, so a running portal
// keeps its token and picks the new secret up at its next login.
//
// It acts with VAULT_TOKEN: an admin token, or better one holding only the
// certportal-secret-id-rotation policy setup writes (generate, look up and
// destroy this role's secret ids — nothing else). A running portal also
// rotates by itself at 2/3 of the lifetime, when setup's
// --secret-id-self-rotate (the default) lets its identity and it can write
// the file (internal/portal/rotate.go), without destroying the old one; this
// command is for what it cannot do: a read-only or inline secret, recovery
// from an expired one, and rotation with self-rotation switched off.
func runRotateSecretID(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rotate-secret-id", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("secret-id-file", getenv("CERTPORTAL_APPROLE_SECRET_ID_FILE"), "the portal's secret id file, replaced in place (CERTPORTAL_APPROLE_SECRET_ID_FILE)")
	mount := fs.String("approle-mount", envOr(getenv, "CERTPORTAL_APPROLE_MOUNT", "approle"), "AppRole auth mount (CERTPORTAL_APPROLE_MOUNT)")
	role := fs.String("approle-name", "certportal", "the portal's AppRole")
	vaultAddr := fs.String("vault-addr", getenv("VAULT_ADDR"), "Vault address (VAULT_ADDR)")
	vaultCA := fs.String("vault-cacert", getenv("VAULT_CACERT"), "CA file for Vault's TLS certificate (VAULT_CACERT)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "certportal rotate-secret-id: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	token := getenv("VAULT_TOKEN")
	if *vaultAddr == "" || token == "" || *file == "" {
		return errors.New("rotate-secret-id: needs VAULT_ADDR, VAULT_TOKEN (admin, or the certportal-secret-id-rotation policy) and --secret-id-file")
	}
	// A missing file is refused rather than created: with a mistyped path
	// the real secret id would stay valid while the run reported success.
	raw, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("rotate-secret-id: read the current secret id: %w (create one with `certportal setup --approle-out DIR`)", err)
	}
	old := strings.TrimSpace(string(raw))
	if old == "" {
		return fmt.Errorf("rotate-secret-id: %s is empty", *file)
	}
	c, err := nginxVaultClient(*vaultAddr, *vaultCA, token)
	if err != nil {
		return fmt.Errorf("rotate-secret-id: %w", err)
	}
	path := "auth/" + strings.Trim(*mount, "/") + "/role/" + *role

	// Looked up first: a token that cannot do the rotation fails before a
	// new secret id exists, and the old one's accessor is known in case
	// destroying it fails.
	look, err := c.Logical().WriteWithContext(ctx, path+"/secret-id/lookup", map[string]any{"secret_id": old})
	if err != nil {
		return fmt.Errorf("rotate-secret-id: look up the current secret id: %w", err)
	}
	oldAlive := look != nil && look.Data != nil
	oldAccessor := ""
	if oldAlive {
		oldAccessor, _ = look.Data["secret_id_accessor"].(string)
	}

	gen, err := c.Logical().WriteWithContext(ctx, path+"/secret-id", map[string]any{"metadata": `{"created_by":"certportal rotate-secret-id"}`})
	if err != nil {
		return fmt.Errorf("rotate-secret-id: generate a secret id: %w (nothing changed)", err)
	}
	if gen == nil || gen.Data == nil {
		return errors.New("rotate-secret-id: generate a secret id: empty response (nothing changed)")
	}
	secret, _ := gen.Data["secret_id"].(string)
	accessor, _ := gen.Data["secret_id_accessor"].(string)
	if err := writeSecretFile(*file, secret); err != nil {
		// The new one is unusable without the file: take it back.
		if _, derr := c.Logical().WriteWithContext(context.WithoutCancel(ctx), path+"/secret-id/destroy", map[string]any{"secret_id": secret}); derr != nil {
			return fmt.Errorf("rotate-secret-id: %w; and the new secret id (accessor %s) could not be destroyed: %v", err, accessor, derr)
		}
		return fmt.Errorf("rotate-secret-id: %w (the old secret id is still in place and valid)", err)
	}
	fmt.Fprintf(stdout, "rotate-secret-id: new secret id (accessor %s, %s) written to %s.\n", accessor, lifetime(gen.Data["secret_id_ttl"]), *file)

	if !oldAlive {
		fmt.Fprintln(stdout, "rotate-secret-id: the previous secret id was not valid any more (expired or destroyed); nothing to destroy.")
		return nil
	}
	if _, err := c.Logical().WriteWithContext(context.WithoutCancel(ctx), path+"/secret-id/destroy", map[string]any{"secret_id": old}); err != nil {
		return fmt.Errorf("rotate-secret-id: the new secret id is in place, but the old one (accessor %s) is still valid: %w; destroy it with `vault write %s/secret-id-accessor/destroy secret_id_accessor=%s`",
			oldAccessor, err, path, oldAccessor)
	}
	fmt.Fprintf(stdout, "rotate-secret-id: old secret id (accessor %s) destroyed.\n", oldAccessor)
	return nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// lifetime describes Vault's secret_id_ttl (seconds; 0 never expires).
func lifetime(v any) string {
	n, err := strconv.ParseInt(fmt.Sprint(v), 10, 64)
	if err != nil || n <= 0 {
		return "never expires"
	}
	return "expires in " + (time.Duration(n) * time.Second).String()
}
