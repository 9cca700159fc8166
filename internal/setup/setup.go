// Package setup bootstraps a Vault for certportal: PKI root and issuing CA,
// the user-auth role bound to each user's own identity, policies, the
// userpass mount and optional demo users. Every step checks before it writes,
// so running it again changes nothing and says so.
package setup

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/i18n"
)

// Options say what to build.
type Options struct {
	RootMount     string // e.g. pki_root
	PKIMount      string // issuing mount, e.g. pki
	Role          string // e.g. user-auth
	UserpassMount string
	EmailDomain   string
	KeyType       string // ec or rsa
	KeyBits       int
	MaxTTL        time.Duration // role's max certificate validity
	Organization  string

	UserPolicy     string
	HelpdeskPolicy string
	AuditorPolicy  string
	ServicePolicy  string // the portal's own identity
	AppRoleMount   string
	AppRoleName    string

	// TTLs are the validities users may ask for (the ttl values the user,
	// helpdesk and auditor policies admit); they must match the portal's
	// CERTPORTAL_TTLS, whose default they share.
	TTLs []time.Duration
	// UserTokenBoundCIDRs binds the tokens of the demo users setup manages
	// to these networks (the portal's addresses), so that a user's token
	// works only from the portal. Operators set the same token_bound_cidrs
	// on their own userpass users.
	UserTokenBoundCIDRs []string

	// The Nginx server role and its names (certportal nginx-certs). The role
	// lives in ServerMount, an intermediate of its own under the same root:
	// the portal's AppRole may revoke in PKIMount, and Vault cannot limit a
	// revoke to some serials, so server certificates must not be there.
	ServerMount string
	ServerRole  string
	ServerNames []string
	// ServerIPSANs are the only IP SANs a server certificate may carry;
	// none (the default) turns IP SANs off in the role.
	ServerIPSANs []string
	// ServerAllowLocalhost lets the server role issue for localhost even
	// when it is not one of ServerNames.
	ServerAllowLocalhost bool

	// The portal's AppRole secret ids: how long one lives, how many logins
	// it allows (0: any number) and from which networks; and the networks
	// its tokens work from.
	SecretIDTTL            time.Duration
	SecretIDNumUses        int
	SecretIDBoundCIDRs     []string
	AppRoleTokenBoundCIDRs []string
	// SecretRotationPolicy may replace the AppRole's secret id and nothing
	// else (certportal rotate-secret-id).
	SecretRotationPolicy string
	// SecretIDSelfRotate lets the portal's own identity issue its next
	// secret id (with the role's TTL, uses and CIDRs), so that a running
	// portal rotates before expiry. Off, rotation is rotate-secret-id's
	// alone; the portal may still look up its secret id (the expiry metric).
	SecretIDSelfRotate bool

	// HelpdeskOnBehalf writes OnBehalfRole and lets the helpdesk policy issue
	// from it: helpdesk staff may then issue any user's certificate with
	// their own token (and see its key). Off removes both again.
	HelpdeskOnBehalf bool
	OnBehalfRole     string

	// DeviceKeys is the portal's CERTPORTAL_DEVICE_KEYS (off, offered or
	// required). Required takes pki/issue off the user, helpdesk and
	// auditor policies, so that no user's own token gets a key made by
	// Vault, in the portal or around it; they keep pki/sign. Off and
	// offered grant both.
	DeviceKeys string

	// The portal's per-username login limit (serve's
	// CERTPORTAL_LOGIN_USER_MAX_FAILURES and _WINDOW): the userpass mount's
	// lockout is tuned to sit above it (see userLockout). 0: left alone.
	LoginUserMaxFailures int
	LoginUserWindow      time.Duration
	// SessionAbsolute is the portal's absolute session timeout: the
	// userpass mount's max_lease_ttl is tuned to it, so no user's token
	// outlives the session it serves (one a crash left behind included).
	// 0: left alone.
	SessionAbsolute time.Duration
	// MFA is Vault's login MFA for the userpass mount: MFATOTP, MFAOff or
	// MFAUnchanged. The method is found by MFAMethodName; the enforcement
	// is MFAEnforcement; MFAMaxAttempts is Vault's per-period limit of
	// code attempts per user.
	MFA            string
	MFAMethodName  string
	MFAEnforcement string
	MFAIssuer      string
	MFAMaxAttempts int
	// MFAAllowOldVault enables MFA on a Vault older than MFAMinVault, which
	// setup otherwise refuses (see checkMFAVersion).
	MFAAllowOldVault bool
	// Set by setup's MFA step for the service policy: the method and the
	// userpass accessor its enrolment paths are limited to.
	MFAMethodID string
	MFAAccessor string

	DemoUsers bool
	// NewServiceSecret makes setup generate a secret id for the portal's
	// AppRole and return it in Result (once; Vault keeps only its hash).
	NewServiceSecret bool
}

// Defaults returns the options `certportal setup` uses without flags.
func Defaults() Options {
	return Options{
		RootMount:      "pki_root",
		PKIMount:       "pki",
		Role:           "user-auth",
		UserpassMount:  "userpass",
		EmailDomain:    "example.com",
		KeyType:        "ec",
		KeyBits:        256,
		MaxTTL:         365 * 24 * time.Hour,
		Organization:   "certportal",
		UserPolicy:     "certportal-user",
		HelpdeskPolicy: "certportal-helpdesk",
		AuditorPolicy:  "certportal-auditor",
		ServicePolicy:  "certportal-service",
		AppRoleMount:   "approle",
		AppRoleName:    "certportal",
		ServerRole:     DefaultServerRole,
		ServerMount:    DefaultServerMount,
		OnBehalfRole:   "user-auth-onbehalf",
		DeviceKeys:     config.Default().DeviceKeys,
		ServerNames:    []string{DefaultServerNames},
		TTLs:           config.Default().TTLs,
		// A month: the portal re-reads the secret id file at every login, so
		// rotating weekly (rotate-secret-id from a timer) leaves three weeks
		// to notice a rotation that keeps failing before logins stop.
		SecretIDTTL:          DefaultSecretIDTTL,
		SecretRotationPolicy: "certportal-secret-id-rotation",
		SecretIDSelfRotate:   true,

		LoginUserMaxFailures: config.DefaultLoginUserMaxFailures,
		LoginUserWindow:      config.DefaultLoginUserWindow,
		SessionAbsolute:      config.DefaultSessionAbsolute,
		MFAMethodName:        "certportal-totp",
		MFAEnforcement:       "certportal",
		MFAIssuer:            "certportal",
		MFAMaxAttempts:       5,
	}
}

// deviceKeysRequired is CERTPORTAL_DEVICE_KEYS=required (portal.DeviceKeysRequired).
const deviceKeysRequired = "required"

// DefaultSecretIDTTL is how long an AppRole secret id lives unless setup is
// told otherwise.
const DefaultSecretIDTTL = 720 * time.Hour

// Validate checks the options before anything is written.
func (o Options) Validate() error {
	switch {
	case o.KeyType == "ec" && (o.KeyBits == 256 || o.KeyBits == 384 || o.KeyBits == 521):
	case o.KeyType == "rsa" && (o.KeyBits == 2048 || o.KeyBits == 3072 || o.KeyBits == 4096):
	default:
		return fmt.Errorf("key type %s with %d bits: want ec 256/384/521 or rsa 2048/3072/4096", o.KeyType, o.KeyBits)
	}
	if o.MaxTTL < time.Hour || o.MaxTTL > 5*365*24*time.Hour {
		return fmt.Errorf("max ttl %s: want between 1h and 5 years", o.MaxTTL)
	}
	if o.OnBehalfRole == "" || o.OnBehalfRole == o.Role || o.OnBehalfRole == o.ServerRole {
		return fmt.Errorf("on-behalf role %q: must be set and differ from the user and server roles", o.OnBehalfRole)
	}
	if err := config.CheckDeviceKeys(o.DeviceKeys); err != nil {
		return err
	}
	if o.HelpdeskOnBehalf && o.DeviceKeys == deviceKeysRequired {
		return errors.New("helpdesk issue on behalf: a key made by Vault, which device-keys required refuses (serve refuses issuing on behalf with it); drop one of them")
	}
	if o.LoginUserMaxFailures < 0 || (o.LoginUserMaxFailures > 0 && o.LoginUserWindow < 2*time.Second) {
		return fmt.Errorf("login user limit %d per %s: want a count of 0 or more and a window of at least 2s", o.LoginUserMaxFailures, o.LoginUserWindow)
	}
	if o.RootMount == o.PKIMount {
		return errors.New("root and issuing mounts must differ")
	}
	if o.ServerMount == "" || o.ServerMount == o.PKIMount || o.ServerMount == o.RootMount {
		return fmt.Errorf("server mount %q: must be set and differ from the issuing and root mounts", o.ServerMount)
	}
	if o.EmailDomain == "" || strings.ContainsAny(o.EmailDomain, " @*{}") {
		return fmt.Errorf("email domain %q: want a DNS name", o.EmailDomain)
	}
	if len(o.TTLs) == 0 {
		return errors.New("ttls: at least one validity is required")
	}
	for _, t := range o.TTLs {
		// Vault would silently cap a longer one at max_ttl: the user would get
		// less than the portal promised.
		if t < time.Second || t > o.MaxTTL {
			return fmt.Errorf("ttl %s: want between 1s and the max ttl %s", t, o.MaxTTL)
		}
	}
	for _, c := range [][]string{o.UserTokenBoundCIDRs, o.SecretIDBoundCIDRs, o.AppRoleTokenBoundCIDRs} {
		if err := validCIDRs(c); err != nil {
			return err
		}
	}
	for _, ip := range o.ServerIPSANs {
		if a, err := netip.ParseAddr(ip); err != nil || a.Zone() != "" || a.String() != ip {
			// The policy compares the exact text nginx-certs sends.
			return fmt.Errorf("server IP SAN %q: want an IP address in its canonical form, e.g. 127.0.0.1 or ::1", ip)
		}
	}
	if o.SecretIDTTL < 0 || (o.SecretIDTTL > 0 && o.SecretIDTTL < time.Hour) {
		return fmt.Errorf("secret id ttl %s: want 0 (never expires) or at least 1h", o.SecretIDTTL)
	}
	if o.SecretIDNumUses < 0 {
		return fmt.Errorf("secret id num uses %d: want 0 (unlimited) or more", o.SecretIDNumUses)
	}
	if o.SecretRotationPolicy == "" {
		return errors.New("secret id rotation policy: a name is required")
	}
	return validMFA(o)
}

// validCIDRs accepts CIDR blocks only (a bare address is refused: Vault
// would take it as a /32, and a typo for a network would silently narrow to one host).
func validCIDRs(list []string) error {
	for _, c := range list {
		p, err := netip.ParsePrefix(c)
		if err != nil || p.Masked() != p {
			return fmt.Errorf("CIDR %q: want a network such as 10.0.5.0/24 or 127.0.0.1/32", c)
		}
	}
	return nil
}

// DemoUser is a demo account setup created, with its one-time password.
type DemoUser struct {
	Username string
	Password string
	Policies []string
	Note     string
}

// Result reports what setup did.
type Result struct {
	Steps     []Step
	DemoUsers []DemoUser // only users created in this run

	// The portal's AppRole; ServiceSecretID only with NewServiceSecret.
	ServiceRoleID   string
	ServiceSecretID string
	// MFAMethodID is the portal's TOTP method (with MFA totp), printed for
	// the operator; serve reads it from the login enforcement itself.
	MFAMethodID string
}

// Step is one checked item and whether it was changed.
type Step struct {
	What    string
	Changed bool
}

// Changed reports whether any step wrote to Vault.
func (r *Result) Changed() bool {
	for _, s := range r.Steps {
		if s.Changed {
			return true
		}
	}
	return false
}

type run struct {
	c   *vaultapi.Client
	o   Options
	res *Result
}

// Run applies opts to the Vault c points at; c must carry an admin token.
func Run(ctx context.Context, c *vaultapi.Client, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	r := &run{c: c, o: o, res: &Result{}}
	steps := []func(context.Context) error{
		r.rootCA, r.issuingCA, r.serverCA, r.urls, r.userpass, r.userLockout, r.userTokenMax, r.mfa, r.role, r.onBehalfRole, r.policies, r.appRole, r.serverRole, r.demoUsers,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return r.res, err
		}
	}
	return r.res, nil
}

func (r *run) step(what string, changed bool) { r.res.Steps = append(r.res.Steps, Step{what, changed}) }

// say is a step's text: the catalog's English "setupstep.*" message, which
// setup prints and records in the trail as it is; the audit page reads it
// back into the page's language by the same message (internal/ui).
func say(key string, args ...any) string { return i18n.T(i18n.English, key, args...) }

func (r *run) read(ctx context.Context, path string) (*vaultapi.Secret, error) {
	s, err := r.c.Logical().ReadWithContext(ctx, path)
	if err != nil {
		var re *vaultapi.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return s, nil
}

func (r *run) write(ctx context.Context, path string, data map[string]any) (*vaultapi.Secret, error) {
	s, err := r.c.Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return s, nil
}

func (r *run) ensureMount(ctx context.Context, path string, maxTTL time.Duration) (bool, error) {
	mounts, err := r.c.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return false, fmt.Errorf("list mounts: %w", err)
	}
	if m, ok := mounts[path+"/"]; ok {
		if m.Type != "pki" {
			return false, fmt.Errorf("mount %s exists with type %s, want pki", path, m.Type)
		}
		return false, nil
	}
	err = r.c.Sys().MountWithContext(ctx, path, &vaultapi.MountInput{
		Type: "pki", Description: "certportal",
		Config: vaultapi.MountConfigInput{MaxLeaseTTL: maxTTL.String()},
	})
	if err != nil {
		return false, fmt.Errorf("mount %s: %w", path, err)
	}
	return true, nil
}

// caPEM returns the mount's default issuer certificate, or "" if it has none.
func (r *run) caPEM(ctx context.Context, mount string) (string, error) {
	s, err := r.read(ctx, mount+"/issuer/default")
	if err != nil {
		var re *vaultapi.ResponseError
		if errors.As(err, &re) && (re.StatusCode == http.StatusBadRequest || re.StatusCode == http.StatusInternalServerError) {
			return "", nil // no default issuer yet
		}
		return "", err
	}
	if s == nil || s.Data == nil {
		return "", nil
	}
	c, _ := s.Data["certificate"].(string)
	return strings.TrimSpace(c), nil
}

const (
	rootTTL         = 10 * 365 * 24 * time.Hour
	intermediateTTL = 5 * 365 * 24 * time.Hour
)

func (r *run) rootCA(ctx context.Context) error {
	created, err := r.ensureMount(ctx, r.o.RootMount, rootTTL)
	if err != nil {
		return err
	}
	r.step(say("setupstep.pki_mount", r.o.RootMount), created)
	ca, err := r.caPEM(ctx, r.o.RootMount)
	if err != nil {
		return err
	}
	if ca != "" {
		r.step(say("setupstep.root_ca", r.o.RootMount), false)
		return nil
	}
	_, err = r.write(ctx, r.o.RootMount+"/root/generate/internal", map[string]any{
		"common_name":  r.o.Organization + " Root CA",
		"organization": r.o.Organization,
		"key_type":     "ec",
		"key_bits":     384,
		"ttl":          rootTTL.String(),
		"issuer_name":  "root",
	})
	if err != nil {
		return err
	}
	r.step(say("setupstep.root_ca", r.o.RootMount), true)
	return nil
}

func (r *run) issuingCA(ctx context.Context) error {
	return r.intermediate(ctx, r.o.PKIMount, "issuing_ca", r.o.Organization+" Issuing CA")
}

// serverCA is the intermediate Nginx's server certificates come from.
func (r *run) serverCA(ctx context.Context) error {
	if r.o.ServerRole == "" {
		return nil
	}
	return r.intermediate(ctx, r.o.ServerMount, "server_ca", r.o.Organization+" Server CA")
}

// intermediate makes mount an intermediate CA signed by the root, once;
// what names it in the steps (setupstep.issuing_ca, setupstep.server_ca).
func (r *run) intermediate(ctx context.Context, mount, what, cn string) error {
	created, err := r.ensureMount(ctx, mount, intermediateTTL)
	if err != nil {
		return err
	}
	r.step(say("setupstep.pki_mount", mount), created)
	ca, err := r.caPEM(ctx, mount)
	if err != nil {
		return err
	}
	if ca != "" {
		r.step(say("setupstep."+what, mount), false)
		return nil
	}
	csr, err := r.write(ctx, mount+"/intermediate/generate/internal", map[string]any{
		"common_name":  cn,
		"organization": r.o.Organization,
		"key_type":     "ec",
		"key_bits":     256,
	})
	if err != nil {
		return err
	}
	signed, err := r.write(ctx, r.o.RootMount+"/root/sign-intermediate", map[string]any{
		"csr":                   csr.Data["csr"],
		"common_name":           cn,
		"organization":          r.o.Organization,
		"ttl":                   intermediateTTL.String(),
		"max_path_length":       0,
		"use_csr_values":        false,
		"permitted_dns_domains": []string{},
	})
	if err != nil {
		return err
	}
	cert, _ := signed.Data["certificate"].(string)
	root, _ := signed.Data["issuing_ca"].(string)
	// Importing the root with the intermediate makes ca_chain carry the
	// whole chain, so the .p12 and /ca.pem are complete.
	if _, err := r.write(ctx, mount+"/intermediate/set-signed", map[string]any{
		"certificate": strings.TrimSpace(cert) + "\n" + strings.TrimSpace(root) + "\n",
	}); err != nil {
		return err
	}
	r.step(say("setupstep."+what+"_signed", mount, r.o.RootMount), true)
	return nil
}

func (r *run) urls(ctx context.Context) error {
	addr := strings.TrimRight(r.c.Address(), "/")
	mounts := []string{r.o.RootMount, r.o.PKIMount}
	if r.o.ServerRole != "" {
		mounts = append(mounts, r.o.ServerMount)
	}
	for _, m := range mounts {
		want := map[string]any{
			"issuing_certificates":    []string{addr + "/v1/" + m + "/ca"},
			"crl_distribution_points": []string{addr + "/v1/" + m + "/crl"},
		}
		cur, err := r.read(ctx, m+"/config/urls")
		if err != nil {
			return err
		}
		if cur != nil && sameStrings(cur.Data["issuing_certificates"], want["issuing_certificates"]) &&
			sameStrings(cur.Data["crl_distribution_points"], want["crl_distribution_points"]) {
			r.step(say("setupstep.urls", m), false)
			continue
		}
		if _, err := r.write(ctx, m+"/config/urls", want); err != nil {
			return err
		}
		r.step(say("setupstep.urls", m), true)
	}
	return nil
}

func (r *run) userpass(ctx context.Context) error {
	auths, err := r.c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list auth mounts: %w", err)
	}
	if a, ok := auths[r.o.UserpassMount+"/"]; ok {
		if a.Type != "userpass" {
			return fmt.Errorf("auth mount %s exists with type %s, want userpass", r.o.UserpassMount, a.Type)
		}
		r.step(say("setupstep.userpass", r.o.UserpassMount), false)
		return nil
	}
	if err := r.c.Sys().EnableAuthWithOptionsWithContext(ctx, r.o.UserpassMount, &vaultapi.EnableAuthOptions{
		Type: "userpass", Description: "certportal employees",
	}); err != nil {
		return fmt.Errorf("enable userpass: %w", err)
	}
	r.step(say("setupstep.userpass", r.o.UserpassMount), true)
	return nil
}

// UserLockout is the userpass mount's user_lockout_config that matches the
// portal's per-username limit of n failures, forgotten window after the
// last. The portal refuses a name after n counted failures, so Vault, which
// counts every failure it checks for that name, never gets to its threshold
// through the portal (threshold n+5) — a stranger cannot lock an employee out
// of Vault — while an attacker going around the portal to Vault directly is
// still locked out, for window. Vault forgets a count after 90% of the
// portal's window: it must forget no later than the portal does, or a slow
// attacker could let Vault's count outgrow the portal's; the tenth covers
// clock and latency differences (Vault counts in whole seconds).
func UserLockout(n int, window time.Duration) (threshold int, duration, counterReset time.Duration) {
	reset := (window * 9 / 10).Truncate(time.Second)
	if reset < time.Second {
		reset = time.Second
	}
	return n + 5, window.Truncate(time.Second), reset
}

// userTokenMax caps every token the userpass mount issues at the portal's
// absolute session timeout (max_lease_ttl on the mount: Vault takes the
// smaller of it and a user's own token_max_ttl), so a token the portal
// could not revoke - a kill -9 with a random session key - dies with the
// session it served, whatever TTL an operator gave the user.
func (r *run) userTokenMax(ctx context.Context) error {
	if r.o.SessionAbsolute <= 0 {
		r.step(say("setupstep.ttl_kept", r.o.UserpassMount), false)
		return nil
	}
	max := r.o.SessionAbsolute.Truncate(time.Second)
	what := say("setupstep.ttl", r.o.UserpassMount, max)
	path := "sys/auth/" + r.o.UserpassMount + "/tune"
	cur, err := r.read(ctx, path)
	if err != nil {
		return err
	}
	if cur != nil && fmt.Sprint(cur.Data["max_lease_ttl"]) == fmt.Sprint(int64(max/time.Second)) {
		r.step(what, false)
		return nil
	}
	if _, err := r.write(ctx, path, map[string]any{"max_lease_ttl": fmt.Sprintf("%ds", int64(max/time.Second))}); err != nil {
		return err
	}
	r.step(what, true)
	return nil
}

// userLockout tunes the userpass mount's lockout to the portal's limit.
func (r *run) userLockout(ctx context.Context) error {
	if r.o.LoginUserMaxFailures <= 0 {
		r.step(say("setupstep.lockout_kept", r.o.UserpassMount), false)
		return nil
	}
	threshold, duration, reset := UserLockout(r.o.LoginUserMaxFailures, r.o.LoginUserWindow)
	what := say("setupstep.lockout", r.o.UserpassMount, threshold, duration, reset, r.o.LoginUserMaxFailures)
	path := "sys/auth/" + r.o.UserpassMount + "/tune"
	cur, err := r.read(ctx, path)
	if err != nil {
		return err
	}
	if cur != nil && fmt.Sprint(cur.Data["user_lockout_threshold"]) == fmt.Sprint(threshold) &&
		sameDuration(cur.Data["user_lockout_duration"], duration.String()) &&
		sameDuration(cur.Data["user_lockout_counter_reset_duration"], reset.String()) &&
		fmt.Sprint(cur.Data["user_lockout_disable"]) == "false" {
		r.step(what, false)
		return nil
	}
	if _, err := r.write(ctx, path, map[string]any{"user_lockout_config": map[string]any{
		"lockout_threshold":              fmt.Sprint(threshold),
		"lockout_duration":               fmt.Sprintf("%ds", int64(duration/time.Second)),
		"lockout_counter_reset_duration": fmt.Sprintf("%ds", int64(reset/time.Second)),
		"lockout_disable":                false,
	}}); err != nil {
		return err
	}
	r.step(what, true)
	return nil
}

func (r *run) accessor(ctx context.Context) (string, error) {
	auths, err := r.c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return "", fmt.Errorf("list auth mounts: %w", err)
	}
	a, ok := auths[r.o.UserpassMount+"/"]
	if !ok || a.Accessor == "" {
		return "", fmt.Errorf("userpass mount %s has no accessor", r.o.UserpassMount)
	}
	return a.Accessor, nil
}

// RoleData is the user-auth role: a token can only name its own userpass
// identity, as <alias name>@<domain>, for client authentication only.
func RoleData(o Options, accessor string) map[string]any {
	return map[string]any{
		"allowed_domains":             []string{"{{identity.entity.aliases." + accessor + ".name}}@" + o.EmailDomain},
		"allowed_domains_template":    true,
		"allow_bare_domains":          true,
		"allow_subdomains":            false,
		"allow_glob_domains":          false,
		"allow_wildcard_certificates": false,
		"allow_any_name":              false,
		"allow_localhost":             false,
		"allow_ip_sans":               false,
		"allowed_uri_sans":            []string{},
		"allowed_other_sans":          []string{},
		"enforce_hostnames":           false,
		"server_flag":                 false,
		"client_flag":                 true,
		"code_signing_flag":           false,
		"email_protection_flag":       false,
		"key_type":                    o.KeyType,
		"key_bits":                    o.KeyBits,
		"key_usage":                   []string{"DigitalSignature"},
		"ext_key_usage":               []string{},
		"max_ttl":                     fmt.Sprintf("%d", int64(o.MaxTTL/time.Second)),
		"ttl":                         fmt.Sprintf("%d", int64(min(o.MaxTTL, 30*24*time.Hour)/time.Second)),
		"organization":                []string{o.Organization},
		"require_cn":                  true,
		// pki/sign (keys made on the user's device): the name comes from
		// the request's common_name, which the templated allowed_domains
		// limits to the token's own identity, never from the CSR; a CSR
		// naming someone else gains nothing.
		"use_csr_common_name":                false,
		"use_csr_sans":                       false,
		"no_store":                           false,
		"generate_lease":                     false,
		"basic_constraints_valid_for_non_ca": true,
		"not_before_duration":                "30s",
	}
}

func (r *run) role(ctx context.Context) error {
	acc, err := r.accessor(ctx)
	if err != nil {
		return err
	}
	want := RoleData(r.o, acc)
	path := r.o.PKIMount + "/roles/" + r.o.Role
	cur, err := r.read(ctx, path)
	if err != nil {
		return err
	}
	if cur != nil && roleMatches(cur.Data, want) {
		r.step(say("setupstep.role", path), false)
		return nil
	}
	if _, err := r.write(ctx, path, want); err != nil {
		return err
	}
	r.step(say("setupstep.role", path), true)
	return nil
}

// OnBehalfRoleData is the helpdesk's on-behalf role: the user role with the
// identity template replaced by the one glob "*@<domain>", so it admits any
// user's address and still nothing else — not the bare domain, no
// subdomain, IP or localhost, client use only. (A bare-domain rule would
// admit "<domain>" itself as a name.)
func OnBehalfRoleData(o Options) map[string]any {
	d := RoleData(o, "")
	d["allowed_domains"] = []string{"*@" + o.EmailDomain}
	d["allowed_domains_template"] = false
	d["allow_bare_domains"] = false
	d["allow_glob_domains"] = true
	return d
}

// onBehalfRole writes the on-behalf role when it is switched on and deletes
// it when it is not, so that switching off takes the capability away.
func (r *run) onBehalfRole(ctx context.Context) error {
	path := r.o.PKIMount + "/roles/" + r.o.OnBehalfRole
	cur, err := r.read(ctx, path)
	if err != nil {
		return err
	}
	if !r.o.HelpdeskOnBehalf {
		if cur == nil {
			return nil
		}
		if _, err := r.c.Logical().DeleteWithContext(ctx, path); err != nil {
			return fmt.Errorf("delete %s: %w", path, err)
		}
		r.step(say("setupstep.role_removed_onbehalf", path), true)
		return nil
	}
	want := OnBehalfRoleData(r.o)
	if cur != nil && roleMatches(cur.Data, want) {
		r.step(say("setupstep.role", path), false)
		return nil
	}
	if _, err := r.write(ctx, path, want); err != nil {
		return err
	}
	r.step(say("setupstep.role", path), true)
	return nil
}

// roleMatches compares the fields setup owns, in Vault's read-back form.
func roleMatches(cur, want map[string]any) bool {
	for k, w := range want {
		c, ok := cur[k]
		if !ok {
			return false
		}
		switch wv := w.(type) {
		case []string:
			if !sameStrings(c, wv) {
				return false
			}
		case bool:
			if cb, _ := c.(bool); cb != wv {
				return false
			}
		case int:
			if fmt.Sprint(c) != fmt.Sprint(wv) {
				return false
			}
		case string:
			if k == "ttl" || k == "max_ttl" || k == "not_before_duration" {
				// Vault reads durations back as seconds.
				if !sameDuration(c, wv) {
					return false
				}
			} else if fmt.Sprint(c) != wv {
				return false
			}
		}
	}
	return true
}

func sameDuration(c any, w string) bool {
	wd, err := time.ParseDuration(w)
	if err != nil {
		wd, err = time.ParseDuration(w + "s")
		if err != nil {
			return false
		}
	}
	return fmt.Sprint(c) == fmt.Sprint(int64(wd/time.Second))
}

func sameStrings(a any, b any) bool {
	return reflect.DeepEqual(toStrings(a), toStrings(b))
}

func toStrings(v any) []string {
	var out []string
	switch x := v.(type) {
	case []string:
		out = append(out, x...)
	case []any:
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
	case string:
		if x != "" {
			out = strings.Split(x, ",")
		}
	}
	sort.Strings(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// Policies returns the HCL of each policy setup writes. The user policy can
// issue from the user-auth role (with DeviceKeys required only sign) and
// nothing else; Vault's templated role then
// limits which name the token may ask for, and the policy which parameters:
// only what the portal sends, so a user calling Vault directly with their own
// token gets nothing the portal would not hand out.
func Policies(o Options) map[string]string {
	// pki/sign takes the same parameters plus the CSR: the role (with
	// use_csr_common_name and use_csr_sans off) takes the name from
	// common_name, so the CSR contributes only its public key.
	// With device keys required the users' tokens may only sign: a key
	// made by Vault is refused by Vault itself, not only by the portal.
	issue := "# Written by certportal setup.\n"
	if o.DeviceKeys == deviceKeysRequired {
		issue += "# Device keys required (CERTPORTAL_DEVICE_KEYS): no " + o.PKIMount + "/issue/" + o.Role + ".\n"
	} else {
		issue += issueStanza(o.PKIMount+"/issue/"+o.Role, ttlValues(o.TTLs), nil)
	}
	issue += issueStanza(o.PKIMount+"/sign/"+o.Role, ttlValues(o.TTLs), map[string][]string{"csr": nil})
	onBehalf := ""
	if o.HelpdeskOnBehalf {
		onBehalf = "# Issuing on behalf of users (setup --helpdesk-issue-on-behalf).\n" +
			issueStanza(o.PKIMount+"/issue/"+o.OnBehalfRole, ttlValues(o.TTLs), nil)
	}
	return map[string]string{
		o.UserPolicy: issue,
		// Marker policies: holding one gives the portal role of that name.
		// Helpdesk and auditor actions go through the portal's own identity.
		o.HelpdeskPolicy:       "# Written by certportal setup. Holding this policy makes a user certportal helpdesk staff.\n" + issue + onBehalf,
		o.AuditorPolicy:        "# Written by certportal setup. Holding this policy makes a user a certportal auditor.\n" + issue,
		o.ServicePolicy:        ServicePolicy(o),
		o.SecretRotationPolicy: SecretRotationPolicy(o),
	}
}

// ttlValues are the ttl values the policies admit: each validity in the form
// the portal sends it (internal/vault Issue: whole seconds, "86400s").
func ttlValues(ttls []time.Duration) []string {
	out := make([]string, 0, len(ttls))
	for _, t := range ttls {
		out = append(out, fmt.Sprintf("%ds", int64(t/time.Second)))
	}
	return out
}

// issueStanza is a policy path for <mount>/issue/<role> that admits exactly
// the parameters the portal's Issue (and nginx-certs' IssueServer) send.
// Everything else is refused by Vault with 403 before the PKI engine sees the
// request: not_after (which Vault does not cap at the role's max_ttl),
// alt_names, ip_sans, uri_sans, other_sans, serial_number, a CN left out of
// the SANs. In allowed_parameters an empty list means any value, so ttl is
// only ever unrestricted when ttls is nil; extra adds parameters, each with
// its admitted values (empty: any).
func issueStanza(path string, ttls []string, extra map[string][]string) string {
	params := map[string]string{
		// The role decides which names are allowed.
		"common_name":          "[]",
		"format":               `["pem"]`,
		"private_key_format":   `["pkcs8"]`,
		"exclude_cn_from_sans": "[false]",
		"ttl":                  hclList(ttls),
	}
	for k, v := range extra {
		params[k] = hclList(v)
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "path %q {\n  capabilities = [\"update\"]\n  allowed_parameters = {\n", path)
	for _, k := range keys {
		fmt.Fprintf(&b, "    %q = %s\n", k, params[k])
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

func hclList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// SecretRotationPolicy lets `certportal rotate-secret-id` replace the
// portal's AppRole secret id: generate one (with the role's TTL, uses and
// CIDRs: no parameter but metadata), look up and destroy the old one. It
// cannot change the role, read its role id or log in.
func SecretRotationPolicy(o Options) string {
	role := "auth/" + o.AppRoleMount + "/role/" + o.AppRoleName
	return fmt.Sprintf(`# Written by certportal setup: for certportal rotate-secret-id.
path %q {
  capabilities = ["update"]
  allowed_parameters = {
    "metadata" = []
  }
}
path %q {
  capabilities = ["update"]
  allowed_parameters = {
    "secret_id" = []
  }
}
path %q {
  capabilities = ["update"]
  allowed_parameters = {
    "secret_id" = []
  }
}
`, role+"/secret-id", role+"/secret-id/lookup", role+"/secret-id/destroy")
}

// ServicePolicy is the portal's own identity: revoke after the portal checked
// ownership (by serial only), and read what reconciliation and helpdesk
// search need. It cannot issue.
func ServicePolicy(o Options) string {
	return fmt.Sprintf(`# Written by certportal setup: the portal's own identity.
path %q {
  capabilities = ["update"]
  allowed_parameters = {
    "serial_number" = []
  }
}
path %q {
  capabilities = ["list"]
}
path %q {
  capabilities = ["read"]
}
path %q {
  capabilities = ["list"]
}
path %q {
  capabilities = ["list"]
}
`, o.PKIMount+"/revoke", o.PKIMount+"/certs", o.PKIMount+"/cert/*", "auth/"+o.UserpassMount+"/users", o.PKIMount+"/certs/revoked") + mfaServicePolicy(o) + offboardPolicy(o) + selfRotatePolicy(o)
}

// selfRotatePolicy is the portal's view of its own secret id: look one up
// by its value (the portal's own, for the expiry metric; always), and with
// SecretIDSelfRotate generate the next one with nothing but metadata, so
// with the role's TTL, use count and CIDRs. No destroy: the old one stays
// valid until it expires, and a stolen token cannot end the portal's
// secret id. Nothing else of the role: not its role id, not its settings.
func selfRotatePolicy(o Options) string {
	role := "auth/" + o.AppRoleMount + "/role/" + o.AppRoleName
	p := fmt.Sprintf(`path %q {
  capabilities = ["update"]
  allowed_parameters = {
    "secret_id" = []
  }
}
`, role+"/secret-id/lookup")
	if o.SecretIDSelfRotate {
		p += fmt.Sprintf(`path %q {
  capabilities = ["update"]
  allowed_parameters = {
    "metadata" = []
  }
}
`, role+"/secret-id")
	}
	return p
}

// offboardPolicy is what the offboarding sweep reads with the portal's
// identity: each userpass user (its token_policies; "+" is one path
// segment, so not users/<name>/password), the auth mounts' accessors (the
// sys/auth listing, which needs no sudo), and the identity entity behind a
// user's alias (is it disabled?), looked up by alias only, and the identity
// groups it is in (their policies: what the helpdesk may do for the user
// depends on everything Vault grants them, not on token_policies alone).
// With Login MFA the enrolment block already grants that lookup, for the
// userpass mount's accessor alone, which is the one the sweep asks with:
// one block per path.
func offboardPolicy(o Options) string {
	lookup := `path "identity/lookup/entity" {
  capabilities = ["update"]
  allowed_parameters = {
    "alias_name" = []
    "alias_mount_accessor" = []
  }
}
`
	if mfaServicePolicy(o) != "" {
		lookup = ""
	}
	return fmt.Sprintf(`path %q {
  capabilities = ["read"]
}
path "sys/auth" {
  capabilities = ["read"]
}
path "identity/group/id/+" {
  capabilities = ["read"]
}
`, "auth/"+o.UserpassMount+"/users/+") + lookup
}

func (r *run) policies(ctx context.Context) error {
	pols := Policies(r.o)
	names := make([]string, 0, len(pols))
	for n := range pols {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		cur, err := r.c.Sys().GetPolicyWithContext(ctx, name)
		if err != nil {
			return fmt.Errorf("read policy %s: %w", name, err)
		}
		if strings.TrimSpace(cur) == strings.TrimSpace(pols[name]) {
			r.step(say("setupstep.policy", name), false)
			continue
		}
		if err := r.c.Sys().PutPolicyWithContext(ctx, name, pols[name]); err != nil {
			return fmt.Errorf("write policy %s: %w", name, err)
		}
		r.step(say("setupstep.policy", name), true)
	}
	return nil
}

// appRole writes the portal's AppRole (short-lived, renewable tokens bound to
// the service policy) and, when asked, a new secret id.
func (r *run) appRole(ctx context.Context) error {
	auths, err := r.c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list auth mounts: %w", err)
	}
	if a, ok := auths[r.o.AppRoleMount+"/"]; ok {
		if a.Type != "approle" {
			return fmt.Errorf("auth mount %s exists with type %s, want approle", r.o.AppRoleMount, a.Type)
		}
		r.step(say("setupstep.approle_auth", r.o.AppRoleMount), false)
	} else {
		if err := r.c.Sys().EnableAuthWithOptionsWithContext(ctx, r.o.AppRoleMount, &vaultapi.EnableAuthOptions{
			Type: "approle", Description: "certportal service identity",
		}); err != nil {
			return fmt.Errorf("enable approle: %w", err)
		}
		r.step(say("setupstep.approle_auth", r.o.AppRoleMount), true)
	}
	path := "auth/" + r.o.AppRoleMount + "/role/" + r.o.AppRoleName
	want := map[string]any{
		"token_policies":     []string{r.o.ServicePolicy},
		"token_ttl":          "3600",
		"token_max_ttl":      "14400",
		"token_type":         "service",
		"secret_id_num_uses": r.o.SecretIDNumUses,
		"bind_secret_id":     true,
		// Applied to each secret id when it is generated: an existing one
		// keeps the lifetime it was created with (rotate it to apply these).
		"secret_id_ttl": fmt.Sprintf("%d", int64(r.o.SecretIDTTL/time.Second)),
		// Both are checked at every login and token use, old secret ids too.
		"secret_id_bound_cidrs": nonNil(r.o.SecretIDBoundCIDRs),
		"token_bound_cidrs":     nonNil(r.o.AppRoleTokenBoundCIDRs),
	}
	cur, err := r.read(ctx, path)
	if err != nil {
		return err
	}
	if cur != nil && roleMatches(cur.Data, map[string]any{"token_policies": want["token_policies"], "bind_secret_id": true,
		"secret_id_num_uses": r.o.SecretIDNumUses}) &&
		sameCIDRs(cur.Data["secret_id_bound_cidrs"], r.o.SecretIDBoundCIDRs) && sameCIDRs(cur.Data["token_bound_cidrs"], r.o.AppRoleTokenBoundCIDRs) &&
		sameDuration(cur.Data["token_ttl"], "3600s") && sameDuration(cur.Data["token_max_ttl"], "14400s") &&
		sameDuration(cur.Data["secret_id_ttl"], want["secret_id_ttl"].(string)) {
		r.step(say("setupstep.approle", r.o.AppRoleName), false)
	} else {
		if _, err := r.write(ctx, path, want); err != nil {
			return err
		}
		r.step(say("setupstep.approle", r.o.AppRoleName), true)
	}
	id, err := r.read(ctx, path+"/role-id")
	if err != nil || id == nil {
		return fmt.Errorf("read role id: %v", err)
	}
	r.res.ServiceRoleID, _ = id.Data["role_id"].(string)
	if r.o.NewServiceSecret {
		sec, err := r.write(ctx, path+"/secret-id", map[string]any{"metadata": `{"created_by":"certportal setup"}`})
		if err != nil {
			return err
		}
		r.res.ServiceSecretID, _ = sec.Data["secret_id"].(string)
		r.step(say("setupstep.approle_secret", r.o.AppRoleName), true)
	}
	return nil
}

// serverRole writes the role Nginx's server certificate comes from and the
// certportal-nginx policy nginx-certs runs with.
func (r *run) serverRole(ctx context.Context) error {
	if r.o.ServerRole == "" {
		return nil
	}
	steps, err := EnsureServerRole(ctx, r.c, r.o, r.o.ServerRole, r.o.ServerNames)
	r.res.Steps = append(r.res.Steps, steps...)
	return err
}

func (r *run) demoUsers(ctx context.Context) error {
	if !r.o.DemoUsers {
		return nil
	}
	users := []DemoUser{
		{Username: "alice", Policies: []string{r.o.UserPolicy}, Note: "employee"},
		{Username: "bob", Policies: []string{r.o.UserPolicy}, Note: "employee"},
		{Username: "helen", Policies: []string{r.o.HelpdeskPolicy}, Note: "helpdesk"},
		{Username: "audrey", Policies: []string{r.o.AuditorPolicy}, Note: "auditor"},
	}
	for _, u := range users {
		path := "auth/" + r.o.UserpassMount + "/users/" + u.Username
		cur, err := r.read(ctx, path)
		if err != nil {
			return err
		}
		cidrs := nonNil(r.o.UserTokenBoundCIDRs)
		if cur != nil {
			// Never reset an existing user's password: someone may rely on it.
			// The CIDR binding is setup's to keep as asked.
			if sameCIDRs(cur.Data["token_bound_cidrs"], cidrs) {
				r.step(say("setupstep.demo_user_exists", u.Username), false)
				continue
			}
			if _, err := r.write(ctx, path, map[string]any{"token_bound_cidrs": cidrs}); err != nil {
				return err
			}
			r.step(say("setupstep.demo_user_cidrs", u.Username), true)
			continue
		}
		pw, err := password()
		if err != nil {
			return err
		}
		if _, err := r.write(ctx, path, map[string]any{
			"password":       pw,
			"token_policies": u.Policies,
			"token_ttl":      "8h",
			"token_max_ttl":  "12h",
			// Logins and tokens from anywhere but these networks fail.
			"token_bound_cidrs": cidrs,
		}); err != nil {
			return err
		}
		u.Password = pw
		r.res.DemoUsers = append(r.res.DemoUsers, u)
		r.step(say("setupstep.demo_user", u.Username), true)
	}
	return nil
}

// sameCIDRs compares Vault's read-back form of a CIDR list (it writes a
// single address for a /32) with what setup wants.
func sameCIDRs(cur any, want []string) bool {
	norm := func(l []string) []string {
		out := make([]string, 0, len(l))
		for _, c := range l {
			if p, err := netip.ParsePrefix(c); err == nil {
				out = append(out, p.Masked().String())
			} else if a, err := netip.ParseAddr(c); err == nil {
				out = append(out, netip.PrefixFrom(a, a.BitLen()).String())
			} else {
				out = append(out, c)
			}
		}
		sort.Strings(out)
		return out
	}
	return reflect.DeepEqual(norm(toStrings(cur)), norm(want))
}

// nonNil makes an unset list an empty one, which Vault writes as "none"
// (a nil would leave the field as it was).
func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func password() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
