package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/vault"
)

func runSetup(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o := setup.Defaults()
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.RootMount, "root-mount", o.RootMount, "PKI mount holding the root CA")
	fs.StringVar(&o.PKIMount, "pki-mount", o.PKIMount, "issuing PKI mount")
	fs.StringVar(&o.Role, "role", o.Role, "PKI role users issue from")
	fs.StringVar(&o.UserpassMount, "userpass-mount", o.UserpassMount, "userpass auth mount")
	fs.StringVar(&o.EmailDomain, "email-domain", o.EmailDomain, "identities are <username>@<domain>")
	fs.StringVar(&o.KeyType, "key-type", o.KeyType, "key type of user certificates: ec or rsa")
	fs.IntVar(&o.KeyBits, "key-bits", o.KeyBits, "key size: 256/384/521 for ec, 2048/3072/4096 for rsa")
	fs.DurationVar(&o.MaxTTL, "max-ttl", o.MaxTTL, "longest certificate validity the role allows")
	fs.StringVar(&o.ServerRole, "server-role", o.ServerRole, "PKI role for Nginx's server certificate (nginx-certs)")
	fs.StringVar(&o.ServerMount, "server-mount", o.ServerMount, "PKI mount (an intermediate under the root) the server role lives in, apart from the users' mount the portal may revoke in")
	serverNames := fs.String("server-names", strings.Join(o.ServerNames, ","), "comma-separated names the Nginx server role may issue for")
	fs.BoolVar(&o.HelpdeskOnBehalf, "helpdesk-issue-on-behalf", false, "let the helpdesk policy issue any user's certificate from the on-behalf role (serve needs CERTPORTAL_HELPDESK_ISSUE_ON_BEHALF=true); without it, setup removes that role")
	fs.StringVar(&o.OnBehalfRole, "onbehalf-role", o.OnBehalfRole, "PKI role for issuing on behalf of users")
	fs.StringVar(&o.MFA, "mfa", "", "Vault login MFA for the userpass mount: totp (TOTP method and login enforcement) or off (enforcement removed); unset, left as it is")
	fs.StringVar(&o.MFAIssuer, "mfa-issuer", o.MFAIssuer, "issuer name authenticator apps show for the TOTP method")
	fs.BoolVar(&o.MFAAllowOldVault, "mfa-allow-old-vault", false, "enable --mfa totp on a Vault older than "+setup.MFAMinVault+" (CVE-2025-6015: padded codes slip past its rate limit and reuse checks)")
	fs.IntVar(&o.MFAMaxAttempts, "mfa-max-attempts", o.MFAMaxAttempts, "code attempts Vault allows per user and 30-second period")
	fs.BoolVar(&o.DemoUsers, "demo-users", false, "create demo users alice, bob (employees), helen (helpdesk), audrey (auditor) and print their passwords")
	ttls := fs.String("ttls", joinDurations(o.TTLs), "validities users may ask Vault for (the policies admit these ttl values only); must match the portal's CERTPORTAL_TTLS, which sets the default")
	if env := getenv("CERTPORTAL_TTLS"); env != "" {
		*ttls = env
	}
	userCIDRs := fs.String("user-token-bound-cidrs", "", "comma-separated networks of the portal's hosts: demo users' logins and tokens work only from there (set the same token_bound_cidrs on your own userpass users)")
	serverIPs := fs.String("server-ip-sans", "", "comma-separated IP addresses the Nginx server certificate may carry (e.g. 127.0.0.1); unset, the server role allows no IP SANs")
	fs.BoolVar(&o.ServerAllowLocalhost, "server-allow-localhost", false, "let the Nginx server role issue for localhost even when --server-names does not list it")
	fs.DurationVar(&o.SecretIDTTL, "secret-id-ttl", o.SecretIDTTL, "lifetime of each new AppRole secret id (0: never expires); rotate before it ends with rotate-secret-id")
	fs.BoolVar(&o.SecretIDSelfRotate, "secret-id-self-rotate", o.SecretIDSelfRotate, "let the running portal issue its next secret id at 2/3 of the TTL (service policy: generate with metadata only, and lookup); false leaves rotation to rotate-secret-id")
	fs.IntVar(&o.SecretIDNumUses, "secret-id-num-uses", 0, "logins one AppRole secret id allows (0: unlimited; the portal logs in at start and every few hours)")
	secretCIDRs := fs.String("secret-id-bound-cidrs", "", "comma-separated networks the portal's AppRole may log in from")
	approleTokenCIDRs := fs.String("approle-token-bound-cidrs", "", "comma-separated networks the portal's AppRole tokens work from")
	if v := getenv("CERTPORTAL_LOGIN_USER_MAX_FAILURES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("CERTPORTAL_LOGIN_USER_MAX_FAILURES=%q: want a count", v)
		}
		o.LoginUserMaxFailures = n
	}
	if v := getenv("CERTPORTAL_LOGIN_USER_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 2*time.Second {
			return fmt.Errorf("CERTPORTAL_LOGIN_USER_WINDOW=%q: want a duration of at least 2s", v)
		}
		o.LoginUserWindow = d
	}
	fs.IntVar(&o.LoginUserMaxFailures, "login-user-max-failures", o.LoginUserMaxFailures, "the portal's per-username login limit (as for serve): the userpass lockout is tuned above it; 0 leaves the lockout alone")
	fs.DurationVar(&o.LoginUserWindow, "login-user-window", o.LoginUserWindow, "the portal's per-username window (as for serve)")
	if v := getenv("CERTPORTAL_SESSION_ABSOLUTE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("CERTPORTAL_SESSION_ABSOLUTE=%q: want a duration", v)
		}
		o.SessionAbsolute = d
	}
	fs.DurationVar(&o.SessionAbsolute, "session-absolute", o.SessionAbsolute, "the portal's absolute session timeout (as for serve, CERTPORTAL_SESSION_ABSOLUTE): the userpass mount's token max TTL is set to it; 0 leaves it alone")
	// As serve reads it: the environment, then the flag.
	if v := getenv("CERTPORTAL_DEVICE_KEYS"); v != "" {
		o.DeviceKeys = v
	}
	fs.StringVar(&o.DeviceKeys, "device-keys", o.DeviceKeys, "the portal's device-key mode (as for serve, CERTPORTAL_DEVICE_KEYS): required takes pki/issue off the user, helpdesk and auditor policies (pki/sign only); off or offered grant both")
	approleOut := fs.String("approle-out", "", "generate a secret id for the portal's AppRole and write role-id and secret-id files (0600) into this directory")
	vaultAddr := fs.String("vault-addr", getenv("VAULT_ADDR"), "Vault address (VAULT_ADDR)")
	vaultCA := fs.String("vault-cacert", getenv("VAULT_CACERT"), "CA file for Vault's TLS certificate (VAULT_CACERT)")
	dsn := fs.String("db", getenv("CERTPORTAL_DB"), "record this run in the portal's audit trail: SQLite file or postgres:// DSN (CERTPORTAL_DB); unset, only Vault's own audit device records it")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	o.ServerNames = splitList(*serverNames)
	o.UserTokenBoundCIDRs = splitList(*userCIDRs)
	o.ServerIPSANs = splitList(*serverIPs)
	o.SecretIDBoundCIDRs = splitList(*secretCIDRs)
	o.AppRoleTokenBoundCIDRs = splitList(*approleTokenCIDRs)
	var err error
	if o.TTLs, err = config.ParseTTLs(*ttls); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	token := getenv("VAULT_TOKEN")
	if *vaultAddr == "" || token == "" {
		return errors.New("setup needs VAULT_ADDR and an admin VAULT_TOKEN in the environment")
	}
	cfg := vaultapi.DefaultConfig()
	cfg.Address = *vaultAddr
	cfg.MaxRetries = 0
	if *vaultCA != "" {
		if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACert: *vaultCA}); err != nil {
			return fmt.Errorf("vault tls: %w", err)
		}
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return fmt.Errorf("vault client: %w", err)
	}
	c.SetToken(token)
	// The secret id this run replaces: destroyed once the new file is in
	// place, so that reruns leave no valid secret ids behind.
	oldSecret := ""
	if *approleOut != "" {
		if st, err := os.Stat(*approleOut); err != nil || !st.IsDir() {
			return fmt.Errorf("--approle-out %s: not a directory", *approleOut)
		}
		o.NewServiceSecret = true
		if b, err := os.ReadFile(filepath.Join(*approleOut, "secret-id")); err == nil {
			oldSecret = strings.TrimSpace(string(b))
		}
	}
	// The trail is opened before Vault is touched: a database that cannot be
	// written stops setup with nothing changed.
	var trail store.Store
	if *dsn != "" {
		if trail, err = app.OpenStore(ctx, *dsn); err != nil {
			return fmt.Errorf("setup: open audit trail: %w (nothing in Vault was changed)", err)
		}
		defer trail.Close()
	}
	res, runErr := setup.Run(ctx, c, o)
	if res != nil {
		for _, s := range res.Steps {
			mark := "ok     "
			if s.Changed {
				mark = "changed"
			}
			fmt.Fprintf(stdout, "  %s  %s\n", mark, s.What)
		}
	}
	// The AppRole files are part of what this run did: written before the
	// record, so that the record says whether they were.
	var fileErr error
	if runErr == nil && *approleOut != "" {
		for name, val := range map[string]string{"role-id": res.ServiceRoleID, "secret-id": res.ServiceSecretID} {
			if err := writeSecretFile(filepath.Join(*approleOut, name), val); err != nil {
				fileErr = err
				break
			}
		}
		if fileErr == nil && oldSecret != "" && oldSecret != res.ServiceSecretID {
			what := "previous secret id in " + filepath.Join(*approleOut, "secret-id") + " destroyed"
			destroyed, err := destroySecretID(ctx, c, o.AppRoleMount, o.AppRoleName, oldSecret)
			switch {
			case err != nil:
				fileErr = fmt.Errorf("new AppRole files written, but the previous secret id could not be destroyed (use rotate-secret-id, or destroy it by accessor): %w", err)
			case destroyed:
				res.Steps = append(res.Steps, setup.Step{What: what, Changed: true})
				fmt.Fprintf(stdout, "  changed  %s\n", what)
			}
		}
	}
	var recErr error
	if trail != nil {
		outcome := runErr
		if outcome == nil && fileErr != nil {
			outcome = fmt.Errorf("write AppRole files: %w", fileErr)
		}
		recErr = recordSetup(ctx, trail, c, o, res, outcome)
	}
	// Vault's change cannot be taken back; when the trail lacks it, say so
	// loudly. Setup is idempotent: a rerun records again.
	unrecorded := ""
	if recErr != nil {
		unrecorded = fmt.Sprintf("; and its audit record could not be written: %v (rerun setup once the database is writable)", recErr)
	}
	if runErr != nil {
		return fmt.Errorf("setup: %w%s", runErr, unrecorded)
	}
	if res.Changed() {
		fmt.Fprintln(stdout, "setup: Vault is configured for certportal.")
	} else {
		fmt.Fprintln(stdout, "setup: nothing to change; Vault was already configured.")
	}
	if fileErr != nil {
		return fmt.Errorf("setup: %w%s", fileErr, unrecorded)
	}
	if res.MFAMethodID != "" {
		fmt.Fprintf(stdout, "\nLogin MFA (TOTP) method id: %s\n", res.MFAMethodID)
	}
	if *approleOut != "" {
		fmt.Fprintf(stdout, "\nPortal AppRole: role id and a new secret id written to %s (role-id, secret-id).\n", *approleOut)
	}
	if len(res.DemoUsers) > 0 {
		fmt.Fprintln(stdout, "\nDemo logins (shown once; passwords are not stored anywhere else):")
		for _, u := range res.DemoUsers {
			fmt.Fprintf(stdout, "  %-8s %-18s %s\n", u.Username, u.Password, u.Note)
		}
	}
	if recErr != nil {
		return fmt.Errorf("setup: Vault is configured, but its audit record could not be written: %w; rerun setup once the database is writable", recErr)
	}
	return nil
}

// recordSetup appends a config.setup event: who ran setup (the Vault token's
// display name), what it was asked to configure and what it changed. Never a
// token, secret id or password.
func recordSetup(ctx context.Context, trail store.Store, c *vaultapi.Client, o setup.Options, res *setup.Result, runErr error) error {
	// The display name is whatever the token's creator chose; the entity id
	// (empty for a root token) names the Vault identity behind it.
	actor, entity := "unknown", ""
	if sec, err := c.Auth().Token().LookupSelfWithContext(ctx); err == nil && sec != nil {
		if n, _ := sec.Data["display_name"].(string); n != "" {
			actor = n
		}
		entity, _ = sec.Data["entity_id"].(string)
	}
	var changed []string
	if res != nil {
		for _, s := range res.Steps {
			if s.Changed {
				changed = append(changed, s.What)
			}
		}
	}
	details := map[string]string{
		"changed":                   strings.Join(changed, "; "),
		"vault_entity_id":           entity,
		"root_mount":                o.RootMount,
		"pki_mount":                 o.PKIMount,
		"role":                      o.Role,
		"onbehalf_role":             o.OnBehalfRole,
		"server_role":               o.ServerRole,
		"server_mount":              o.ServerMount,
		"server_names":              strings.Join(o.ServerNames, ","),
		"userpass_mount":            o.UserpassMount,
		"email_domain":              o.EmailDomain,
		"key":                       fmt.Sprintf("%s-%d", o.KeyType, o.KeyBits),
		"max_ttl":                   o.MaxTTL.String(),
		"helpdesk_issue_on_behalf":  fmt.Sprint(o.HelpdeskOnBehalf),
		"demo_users":                fmt.Sprint(o.DemoUsers),
		"mfa":                       o.MFA,
		"new_approle_secret":        fmt.Sprint(o.NewServiceSecret),
		"ttls":                      joinDurations(o.TTLs),
		"user_token_bound_cidrs":    strings.Join(o.UserTokenBoundCIDRs, ","),
		"server_ip_sans":            strings.Join(o.ServerIPSANs, ","),
		"server_allow_localhost":    fmt.Sprint(o.ServerAllowLocalhost),
		"secret_id_ttl":             o.SecretIDTTL.String(),
		"secret_id_num_uses":        fmt.Sprint(o.SecretIDNumUses),
		"secret_id_self_rotate":     fmt.Sprint(o.SecretIDSelfRotate),
		"secret_id_bound_cidrs":     strings.Join(o.SecretIDBoundCIDRs, ","),
		"approle_token_bound_cidrs": strings.Join(o.AppRoleTokenBoundCIDRs, ","),
		"login_user_max_failures":   fmt.Sprint(o.LoginUserMaxFailures),
		"login_user_window":         o.LoginUserWindow.String(),
		"session_absolute":          o.SessionAbsolute.String(),
		"device_keys":               o.DeviceKeys,
	}
	outcome := audit.OutcomeSuccess
	if runErr != nil {
		outcome = audit.OutcomeFailure
		details["error"] = runErr.Error()
	}
	// Values (an error from Vault, names from the command line) are
	// escaped as every event's are (audit.EncodeDetails); the operator ran
	// this, so nothing is cut.
	return trail.AppendAudit(context.WithoutCancel(ctx), &audit.Event{
		Time: time.Now().UTC(), Actor: audit.Clean(actor, -1), Action: audit.ActionConfigSetup, Outcome: outcome,
		UserAgent: audit.Clean("certportal setup "+version, -1), Details: audit.EncodeDetails(details, -1),
	})
}

// destroySecretID destroys secret of the AppRole; false when Vault no longer
// knew it (expired or destroyed before).
func destroySecretID(ctx context.Context, c *vaultapi.Client, mount, role, secret string) (bool, error) {
	path := "auth/" + strings.Trim(mount, "/") + "/role/" + role + "/secret-id"
	look, err := c.Logical().WriteWithContext(ctx, path+"/lookup", map[string]any{"secret_id": secret})
	if err != nil {
		return false, fmt.Errorf("look up secret id: %w", err)
	}
	if look == nil || look.Data == nil {
		return false, nil
	}
	if _, err := c.Logical().WriteWithContext(context.WithoutCancel(ctx), path+"/destroy", map[string]any{"secret_id": secret}); err != nil {
		return false, fmt.Errorf("destroy secret id: %w", err)
	}
	return true, nil
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

func joinDurations(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.String()
	}
	return strings.Join(s, ",")
}

// writeSecretFile writes a 0600 file atomically: a reader never sees half a secret.
func writeSecretFile(path, value string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), vault.SecretTempPrefix+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(value + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
