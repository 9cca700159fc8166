// Package config loads and validates certportal's serve configuration from
// flags and CERTPORTAL_* environment variables.
package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/portal"
)

// Config is everything `certportal serve` needs. Build it with Load; a
// Config that passed Validate is safe to wire into the server.
type Config struct {
	Listen string // CERTPORTAL_LISTEN
	// MetricsListen, when set, serves /metrics there (plain HTTP) and not
	// on Listen, so that what users reach never shows it.
	MetricsListen string // CERTPORTAL_METRICS_LISTEN
	DB            string // CERTPORTAL_DB: SQLite path or postgres:// DSN
	TLSCert       string // CERTPORTAL_TLS_CERT: serve HTTPS when set with TLSKey
	TLSKey        string // CERTPORTAL_TLS_KEY
	// Behind a reverse proxy or load balancer.
	ProxyTLS       bool           // CERTPORTAL_PROXY_TLS: the proxy serves HTTPS; cookies are Secure, HSTS is sent
	TrustedProxies []netip.Prefix // CERTPORTAL_TRUSTED_PROXIES: peers whose X-Forwarded-For names the client
	VaultAddr      string         // VAULT_ADDR
	VaultCACert    string         // VAULT_CACERT

	UserpassMount string // CERTPORTAL_USERPASS_MOUNT
	PKIMount      string // CERTPORTAL_PKI_MOUNT
	Role          string // CERTPORTAL_ROLE
	EmailDomain   string // CERTPORTAL_EMAIL_DOMAIN: identities are <user>@<domain>

	UserPolicy     string // CERTPORTAL_USER_POLICY
	HelpdeskPolicy string // CERTPORTAL_HELPDESK_POLICY
	AuditorPolicy  string // CERTPORTAL_AUDITOR_POLICY

	// SessionKey signs session cookies and encrypts session data at rest.
	// Every replica must share it; when empty a random key is made at start
	// and sessions do not survive a restart.
	SessionKey      []byte        // CERTPORTAL_SESSION_KEY (hex or base64, 32+ bytes)
	SessionIdle     time.Duration // CERTPORTAL_SESSION_IDLE
	SessionAbsolute time.Duration // CERTPORTAL_SESSION_ABSOLUTE
	// SessionRecheck bounds how long a session acts on Vault's last word:
	// its token and roles are looked up again at least this often.
	SessionRecheck time.Duration // CERTPORTAL_SESSION_RECHECK
	// SessionSweep is how often expired sessions are ended (tokens revoked,
	// rows deleted) when their browsers never come back.
	SessionSweep time.Duration // CERTPORTAL_SESSION_SWEEP
	// MetricsInterval is how often the certificate gauges are counted
	// again from the inventory (in SQL: about half a second at a million
	// rows, so not on every scrape).
	MetricsInterval time.Duration // CERTPORTAL_METRICS_INTERVAL

	TTLs       []time.Duration // CERTPORTAL_TTLS: validities offered, e.g. "24h,168h,720h"
	DefaultTTL time.Duration   // CERTPORTAL_DEFAULT_TTL

	// The portal's own Vault identity (AppRole).
	AppRoleMount        string // CERTPORTAL_APPROLE_MOUNT
	AppRoleRoleID       string // CERTPORTAL_APPROLE_ROLE_ID
	AppRoleSecretID     string // CERTPORTAL_APPROLE_SECRET_ID
	AppRoleSecretIDFile string // CERTPORTAL_APPROLE_SECRET_ID_FILE, re-read at each login

	// Helpdesk issuing on behalf of users, off by default: staff then see
	// the private key of the certificate they issue. Needs the role that
	// `certportal setup --helpdesk-issue-on-behalf` writes.
	HelpdeskIssueOnBehalf bool   // CERTPORTAL_HELPDESK_ISSUE_ON_BEHALF
	OnBehalfRole          string // CERTPORTAL_ONBEHALF_ROLE

	MaxActive int // CERTPORTAL_MAX_ACTIVE: active certificates per user

	// DeviceKeys: off, offered (default) or required. Offered lets users
	// have their key made in the browser (only a CSR reaches the portal);
	// required refuses keys made by Vault (the server path and issuing on
	// behalf).
	DeviceKeys string // CERTPORTAL_DEVICE_KEYS

	LoginMaxFailures   int            // CERTPORTAL_LOGIN_MAX_FAILURES: failed logins per address and window; 0: off
	LoginFailureWindow time.Duration  // CERTPORTAL_LOGIN_FAILURE_WINDOW
	LoginNetworkLimits []NetworkLimit // CERTPORTAL_LOGIN_NETWORK_LIMITS: the same for wider networks
	// Per submitted username, shared by replicas on PostgreSQL; setup tunes
	// Vault's userpass lockout above it (run setup with the same values).
	LoginUserMaxFailures int           // CERTPORTAL_LOGIN_USER_MAX_FAILURES; 0: off
	LoginUserWindow      time.Duration // CERTPORTAL_LOGIN_USER_WINDOW
	LoginFailureFloor    time.Duration // CERTPORTAL_LOGIN_FAILURE_FLOOR: least time a failed login takes
	// A browser holding a device cookie from an earlier login as that user
	// is exempt from the per-username limit but has this many failures of
	// its own per CERTPORTAL_LOGIN_USER_WINDOW; 0 turns device cookies off.
	LoginDeviceMaxFailures int           // CERTPORTAL_LOGIN_DEVICE_MAX_FAILURES
	LoginDeviceTTL         time.Duration // CERTPORTAL_LOGIN_DEVICE_TTL: how long a device cookie is honoured
	ExpiringSoon           time.Duration // CERTPORTAL_EXPIRING_SOON: when a certificate shows as expiring soon

	// DeniedWindow: a user's refused requests within it after the first
	// are recorded as one event with their count.
	DeniedWindow time.Duration // CERTPORTAL_DENIED_WINDOW
	// ServiceURL is the protected site's page that shows which certificate
	// the browser presented: the dashboard's "check it works" link. A URL
	// without a path gets the Nginx template's /secure/whoami.
	ServiceURL string // CERTPORTAL_SERVICE_URL
	// AccountName is what employees call the account they log in with,
	// e.g. "your ACME account"; empty: "your company account".
	AccountName string // CERTPORTAL_ACCOUNT_NAME
	// MFAPending: a login waiting for its TOTP code is given up after
	// this (at most Vault's own 300 s).
	MFAPending time.Duration // CERTPORTAL_MFA_PENDING
	// MFAStepUp: downloads, revocations and helpdesk actions ask for the
	// password and code again when the last proof is older.
	MFAStepUp time.Duration // CERTPORTAL_MFA_STEP_UP
	// MFATOFU lets an enforced user without a TOTP secret enrol at their
	// first login (trust on first use). Off by default: whoever knows a
	// not-yet-enrolled user's password could enrol their own phone.
	MFATOFU bool // CERTPORTAL_MFA_TOFU

	// Expiry reminders (internal/notify); off unless a channel is set.
	NotifyThresholds    []time.Duration // CERTPORTAL_NOTIFY_THRESHOLDS, default 720h,168h,72h
	NotifyExpired       bool            // CERTPORTAL_NOTIFY_EXPIRED: also tell owners once it has expired (default true)
	NotifyInterval      time.Duration   // CERTPORTAL_NOTIFY_INTERVAL: how often serve makes a pass
	SMTPURL             string          // CERTPORTAL_SMTP_URL: smtp://[user:pass@]host:port (STARTTLS) or smtps://
	SMTPCACert          string          // CERTPORTAL_SMTP_CACERT: CA file for the mail server's certificate
	MailFrom            string          // CERTPORTAL_MAIL_FROM
	HelpdeskEmail       string          // CERTPORTAL_HELPDESK_EMAIL: copies and escalations
	NotifyWebhook       string          // CERTPORTAL_NOTIFY_WEBHOOK: URL (a secret: Slack's and Teams' are credentials)
	NotifyWebhookFormat string          // CERTPORTAL_NOTIFY_WEBHOOK_FORMAT: generic, slack or teams
	NotifyWebhookSecret []byte          // CERTPORTAL_NOTIFY_WEBHOOK_SECRET(_FILE): HMAC key for the signature header
	// NotifyQuiet: CERTPORTAL_NOTIFY_QUIET_HOURS (e.g. 22:00-07:00) in
	// CERTPORTAL_NOTIFY_TIMEZONE for CERTPORTAL_NOTIFY_QUIET_CHANNELS; nil: off.
	NotifyQuiet *QuietHours
	// NotifyEmailMetadata: the Vault entity metadata key holding an owner's
	// address (CERTPORTAL_NOTIFY_EMAIL_METADATA); "": <user>@<email domain>.
	NotifyEmailMetadata string
	PublicURL           string // CERTPORTAL_PUBLIC_URL: base of the renew links in reminders
	// Offboarding: the sweep that revokes the certificates of users Vault
	// no longer admits (see offboard.go).
	OffboardInterval time.Duration // CERTPORTAL_OFFBOARD_INTERVAL; 0: no sweep inside serve
	OffboardMaxShare float64       // CERTPORTAL_OFFBOARD_MAX_SHARE, a fraction (written as a percentage)
	OffboardMaxCount int           // CERTPORTAL_OFFBOARD_MAX_COUNT
	// Background reconciliation (reconcile.go): how often, and when a
	// certificate issued around the portal is revoked automatically.
	ReconcileInterval        time.Duration // CERTPORTAL_RECONCILE_INTERVAL; 0: no reconciliation inside serve
	ReconcileAutoRevokeAfter time.Duration // CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER; 0: never revoke automatically
	ReconcileAutoRevokeMax   int           // CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX: certificates one run revokes
	// ReconcileAutoRevokePerUserMax: CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX,
	// certificates of one employee a run revokes (more: theirs held).
	ReconcileAutoRevokePerUserMax int
	// ReconcileConcurrency: certificate reads a reconciliation keeps in
	// flight towards Vault (CERTPORTAL_RECONCILE_CONCURRENCY).
	ReconcileConcurrency int

	MaxBodyBytes int64  // CERTPORTAL_MAX_BODY_BYTES
	LogLevel     string // CERTPORTAL_LOG_LEVEL: debug, info, warn, error
	// VaultTimeout bounds each Vault call, so a slow Vault gives users a 503
	// well before the HTTP server's write timeout (60 s) or a proxy's.
	VaultTimeout time.Duration // CERTPORTAL_VAULT_TIMEOUT
	// VaultMaxInFlight bounds the Vault calls under way at once; a request
	// that finds no place soon is refused with a 503, so a slow Vault does
	// not pile up waiting work.
	VaultMaxInFlight int // CERTPORTAL_VAULT_MAX_INFLIGHT
	// ClockSkewWarn: when the portal's clock and Vault's (read from the
	// Date header of Vault's answers) differ by more, the log warns and
	// /readyz says so; 0 switches the warning off.
	ClockSkewWarn time.Duration // CERTPORTAL_CLOCK_SKEW_WARN
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Listen:                   "127.0.0.1:8080",
		DB:                       "certportal.db",
		VaultAddr:                "http://127.0.0.1:8200",
		UserpassMount:            "userpass",
		PKIMount:                 "pki",
		Role:                     "user-auth",
		OnBehalfRole:             "user-auth-onbehalf",
		DeviceKeys:               "offered",
		EmailDomain:              "example.com",
		UserPolicy:               "certportal-user",
		HelpdeskPolicy:           "certportal-helpdesk",
		AuditorPolicy:            "certportal-auditor",
		SessionIdle:              30 * time.Minute,
		SessionAbsolute:          DefaultSessionAbsolute,
		SessionRecheck:           time.Minute,
		SessionSweep:             5 * time.Minute,
		MetricsInterval:          time.Minute,
		TTLs:                     []time.Duration{24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour, 90 * 24 * time.Hour, 365 * 24 * time.Hour},
		DefaultTTL:               90 * 24 * time.Hour,
		AppRoleMount:             "approle",
		MaxActive:                3,
		LoginMaxFailures:         20,
		LoginFailureWindow:       10 * time.Minute,
		LoginNetworkLimits:       DefaultNetworkLimits(),
		LoginUserMaxFailures:     DefaultLoginUserMaxFailures,
		LoginUserWindow:          DefaultLoginUserWindow,
		LoginFailureFloor:        time.Second,
		LoginDeviceMaxFailures:   DefaultLoginDeviceMaxFailures,
		LoginDeviceTTL:           180 * 24 * time.Hour,
		DeniedWindow:             time.Minute,
		MFAPending:               300 * time.Second,
		MFAStepUp:                15 * time.Minute,
		ExpiringSoon:             14 * 24 * time.Hour,
		OffboardInterval:         15 * time.Minute,
		OffboardMaxShare:         0.10,
		OffboardMaxCount:         50,
		ReconcileInterval:        15 * time.Minute,
		ReconcileAutoRevokeAfter: time.Hour,
		ReconcileAutoRevokeMax:   portal.DefaultAutoRevokeMax,
		ReconcileConcurrency:     8,
		MaxBodyBytes:             64 << 10,
		NotifyThresholds:         []time.Duration{720 * time.Hour, 168 * time.Hour, 72 * time.Hour},
		NotifyExpired:            true,
		NotifyInterval:           5 * time.Minute,
		NotifyWebhookFormat:      "generic",
		LogLevel:                 "info",
		VaultTimeout:             10 * time.Second,
		VaultMaxInFlight:         64,
		ClockSkewWarn:            30 * time.Second,

		// Unset, ReconcileAutoRevokePerUserMax follows ReconcileAutoRevokeMax
		// (derivePerUserMax).
	}
}

// TLS reports whether the portal serves HTTPS itself.
func (c Config) TLS() bool { return c.TLSCert != "" }

// HTTPS reports whether browsers reach the portal over HTTPS, served by the
// portal itself or by a proxy in front of it.
func (c Config) HTTPS() bool { return c.TLS() || c.ProxyTLS }

// Load reads flags from args, falling back to the environment, then to
// Default. It returns a validated Config.
func Load(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var sessionKey, ttls string
	fs.StringVar(&c.Listen, "listen", env("CERTPORTAL_LISTEN", c.Listen), "address to listen on (CERTPORTAL_LISTEN)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", env("CERTPORTAL_METRICS_LISTEN", ""), "serve /metrics on this address instead of the portal's (CERTPORTAL_METRICS_LISTEN; empty: beside the pages)")
	fs.StringVar(&c.DB, "db", env("CERTPORTAL_DB", c.DB), "SQLite file or postgres:// DSN (CERTPORTAL_DB)")
	fs.StringVar(&c.TLSCert, "tls-cert", env("CERTPORTAL_TLS_CERT", ""), "serve HTTPS with this certificate (CERTPORTAL_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", env("CERTPORTAL_TLS_KEY", ""), "key for -tls-cert (CERTPORTAL_TLS_KEY)")
	fs.StringVar(&c.VaultAddr, "vault-addr", env("VAULT_ADDR", c.VaultAddr), "Vault address (VAULT_ADDR)")
	fs.StringVar(&c.VaultCACert, "vault-cacert", env("VAULT_CACERT", ""), "CA file for Vault's TLS certificate (VAULT_CACERT)")
	fs.StringVar(&c.UserpassMount, "userpass-mount", env("CERTPORTAL_USERPASS_MOUNT", c.UserpassMount), "userpass auth mount (CERTPORTAL_USERPASS_MOUNT)")
	fs.StringVar(&c.PKIMount, "pki-mount", env("CERTPORTAL_PKI_MOUNT", c.PKIMount), "issuing PKI mount (CERTPORTAL_PKI_MOUNT)")
	fs.StringVar(&c.Role, "role", env("CERTPORTAL_ROLE", c.Role), "PKI role users issue from (CERTPORTAL_ROLE)")
	fs.StringVar(&c.EmailDomain, "email-domain", env("CERTPORTAL_EMAIL_DOMAIN", c.EmailDomain), "identities are <username>@<domain> (CERTPORTAL_EMAIL_DOMAIN)")
	fs.StringVar(&c.UserPolicy, "user-policy", env("CERTPORTAL_USER_POLICY", c.UserPolicy), "Vault policy that makes an employee (CERTPORTAL_USER_POLICY)")
	fs.StringVar(&c.HelpdeskPolicy, "helpdesk-policy", env("CERTPORTAL_HELPDESK_POLICY", c.HelpdeskPolicy), "Vault policy that makes helpdesk staff (CERTPORTAL_HELPDESK_POLICY)")
	fs.StringVar(&c.AuditorPolicy, "auditor-policy", env("CERTPORTAL_AUDITOR_POLICY", c.AuditorPolicy), "Vault policy that makes an auditor (CERTPORTAL_AUDITOR_POLICY)")
	fs.StringVar(&sessionKey, "session-key-file", env("CERTPORTAL_SESSION_KEY_FILE", ""), "file holding the session key (CERTPORTAL_SESSION_KEY_FILE); or set CERTPORTAL_SESSION_KEY")
	fs.DurationVar(&c.SessionIdle, "session-idle", envDuration(getenv, "CERTPORTAL_SESSION_IDLE", c.SessionIdle), "idle session timeout (CERTPORTAL_SESSION_IDLE)")
	fs.DurationVar(&c.SessionAbsolute, "session-absolute", envDuration(getenv, "CERTPORTAL_SESSION_ABSOLUTE", c.SessionAbsolute), "absolute session lifetime (CERTPORTAL_SESSION_ABSOLUTE)")
	fs.DurationVar(&c.SessionRecheck, "session-recheck", envDuration(getenv, "CERTPORTAL_SESSION_RECHECK", c.SessionRecheck), "re-check a session's Vault token and roles at least this often (CERTPORTAL_SESSION_RECHECK)")
	fs.DurationVar(&c.SessionSweep, "session-sweep", envDuration(getenv, "CERTPORTAL_SESSION_SWEEP", c.SessionSweep), "how often expired sessions are ended and their tokens revoked (CERTPORTAL_SESSION_SWEEP)")
	fs.DurationVar(&c.MetricsInterval, "metrics-interval", envDuration(getenv, "CERTPORTAL_METRICS_INTERVAL", c.MetricsInterval), "how often the certificate metrics are counted again from the inventory (CERTPORTAL_METRICS_INTERVAL)")
	fs.StringVar(&ttls, "ttls", env("CERTPORTAL_TTLS", ""), "comma-separated certificate validities offered (CERTPORTAL_TTLS)")
	fs.DurationVar(&c.DefaultTTL, "default-ttl", envDuration(getenv, "CERTPORTAL_DEFAULT_TTL", c.DefaultTTL), "validity preselected in the form (CERTPORTAL_DEFAULT_TTL)")
	fs.StringVar(&c.AppRoleMount, "approle-mount", env("CERTPORTAL_APPROLE_MOUNT", c.AppRoleMount), "AppRole mount of the portal's own identity (CERTPORTAL_APPROLE_MOUNT)")
	fs.StringVar(&c.AppRoleRoleID, "approle-role-id", env("CERTPORTAL_APPROLE_ROLE_ID", ""), "the portal's AppRole role id (CERTPORTAL_APPROLE_ROLE_ID)")
	fs.StringVar(&c.AppRoleSecretIDFile, "approle-secret-id-file", env("CERTPORTAL_APPROLE_SECRET_ID_FILE", ""), "file with the AppRole secret id, re-read at each login (CERTPORTAL_APPROLE_SECRET_ID_FILE); or set CERTPORTAL_APPROLE_SECRET_ID")
	proxyTLS, err := envBool(getenv, "CERTPORTAL_PROXY_TLS")
	if err != nil {
		return Config{}, err
	}
	fs.BoolVar(&c.ProxyTLS, "proxy-tls", proxyTLS, "a reverse proxy in front serves the portal over HTTPS: Secure cookies and HSTS without -tls-cert (CERTPORTAL_PROXY_TLS)")
	proxies := fs.String("trusted-proxies", env("CERTPORTAL_TRUSTED_PROXIES", ""), "comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For names the client in the audit trail (CERTPORTAL_TRUSTED_PROXIES); empty: the TCP peer is the client")
	onBehalf, err := envBool(getenv, "CERTPORTAL_HELPDESK_ISSUE_ON_BEHALF")
	if err != nil {
		return Config{}, err
	}
	fs.BoolVar(&c.HelpdeskIssueOnBehalf, "helpdesk-issue-on-behalf", onBehalf, "let helpdesk staff issue certificates for other users (CERTPORTAL_HELPDESK_ISSUE_ON_BEHALF); needs setup --helpdesk-issue-on-behalf")
	fs.StringVar(&c.OnBehalfRole, "onbehalf-role", env("CERTPORTAL_ONBEHALF_ROLE", c.OnBehalfRole), "PKI role helpdesk staff issue on behalf from (CERTPORTAL_ONBEHALF_ROLE)")
	fs.IntVar(&c.LoginMaxFailures, "login-max-failures", envInt(getenv, "CERTPORTAL_LOGIN_MAX_FAILURES", c.LoginMaxFailures), "failed logins one address (IPv6: one /64) may make per window before it must wait; 0 turns this off (CERTPORTAL_LOGIN_MAX_FAILURES)")
	fs.DurationVar(&c.LoginFailureWindow, "login-failure-window", envDuration(getenv, "CERTPORTAL_LOGIN_FAILURE_WINDOW", c.LoginFailureWindow), "window for -login-max-failures (CERTPORTAL_LOGIN_FAILURE_WINDOW)")
	networkLimits := fs.String("login-network-limits", env("CERTPORTAL_LOGIN_NETWORK_LIMITS", FormatNetworkLimits(c.LoginNetworkLimits)), "failed logins wider networks may make per -login-failure-window, e.g. ipv6/48=320; empty: none (CERTPORTAL_LOGIN_NETWORK_LIMITS)")
	fs.IntVar(&c.LoginUserMaxFailures, "login-user-max-failures", envInt(getenv, "CERTPORTAL_LOGIN_USER_MAX_FAILURES", c.LoginUserMaxFailures), "failed logins against one username (existing or not) before it must wait; keep below Vault's lockout: run setup with the same value; 0 turns this off (CERTPORTAL_LOGIN_USER_MAX_FAILURES)")
	fs.DurationVar(&c.LoginUserWindow, "login-user-window", envDuration(getenv, "CERTPORTAL_LOGIN_USER_WINDOW", c.LoginUserWindow), "a username's failures are forgotten this long after the last one (CERTPORTAL_LOGIN_USER_WINDOW)")
	fs.DurationVar(&c.LoginFailureFloor, "login-failure-floor", envDuration(getenv, "CERTPORTAL_LOGIN_FAILURE_FLOOR", c.LoginFailureFloor), "least time every failed login takes, above Vault's slowest refusal (CERTPORTAL_LOGIN_FAILURE_FLOOR)")
	fs.IntVar(&c.LoginDeviceMaxFailures, "login-device-max-failures", envInt(getenv, "CERTPORTAL_LOGIN_DEVICE_MAX_FAILURES", c.LoginDeviceMaxFailures), "failed logins a browser with a device cookie for the name (from an earlier login) may make per -login-user-window past the per-username limit; at most 4; 0 turns device cookies off (CERTPORTAL_LOGIN_DEVICE_MAX_FAILURES)")
	fs.DurationVar(&c.LoginDeviceTTL, "login-device-ttl", envDuration(getenv, "CERTPORTAL_LOGIN_DEVICE_TTL", c.LoginDeviceTTL), "how long a device cookie is honoured after the login that set it (CERTPORTAL_LOGIN_DEVICE_TTL)")
	fs.StringVar(&c.DeviceKeys, "device-keys", env("CERTPORTAL_DEVICE_KEYS", c.DeviceKeys), "keys made in the user's browser: off, offered or required (required refuses keys made by Vault) (CERTPORTAL_DEVICE_KEYS)")
	fs.IntVar(&c.MaxActive, "max-active", envInt(getenv, "CERTPORTAL_MAX_ACTIVE", c.MaxActive), "active certificates allowed per user (CERTPORTAL_MAX_ACTIVE)")
	fs.DurationVar(&c.MFAPending, "mfa-pending", envDuration(getenv, "CERTPORTAL_MFA_PENDING", c.MFAPending), "give up a login waiting for its MFA code after this; at most Vault's 300s (CERTPORTAL_MFA_PENDING)")
	fs.DurationVar(&c.MFAStepUp, "mfa-step-up", envDuration(getenv, "CERTPORTAL_MFA_STEP_UP", c.MFAStepUp), "downloads, revocations and helpdesk actions ask for password and code again when the last one is older (CERTPORTAL_MFA_STEP_UP)")
	tofu, err := envBool(getenv, "CERTPORTAL_MFA_TOFU")
	if err != nil {
		return Config{}, err
	}
	fs.BoolVar(&c.MFATOFU, "mfa-tofu", tofu, "let an MFA-enforced user with no TOTP secret enrol at their first login; weaker than helpdesk enrolment, see docs/mfa.md (CERTPORTAL_MFA_TOFU)")
	fs.DurationVar(&c.DeniedWindow, "denied-window", envDuration(getenv, "CERTPORTAL_DENIED_WINDOW", c.DeniedWindow), "a user's refused requests within this window after the first are recorded as one event with their count (CERTPORTAL_DENIED_WINDOW)")
	fs.DurationVar(&c.ExpiringSoon, "expiring-soon", envDuration(getenv, "CERTPORTAL_EXPIRING_SOON", c.ExpiringSoon), "show certificates expiring within this as expiring soon (CERTPORTAL_EXPIRING_SOON)")
	fs.StringVar(&c.ServiceURL, "service-url", env("CERTPORTAL_SERVICE_URL", ""), "the protected site's whoami page, linked as \"check it works\"; a URL without a path gets /secure/whoami (CERTPORTAL_SERVICE_URL)")
	fs.StringVar(&c.AccountName, "account-name", env("CERTPORTAL_ACCOUNT_NAME", ""), "what the login page calls the account employees log in with, e.g. \"your ACME account\" (CERTPORTAL_ACCOUNT_NAME)")
	var thresholds, webhookSecretFile, quietHours, quietTZ, quietChannels string
	fs.StringVar(&quietHours, "notify-quiet-hours", env("CERTPORTAL_NOTIFY_QUIET_HOURS", ""), "daily window, e.g. 22:00-07:00, in which reminders to owners wait until it ends (CERTPORTAL_NOTIFY_QUIET_HOURS)")
	fs.StringVar(&quietTZ, "notify-timezone", env("CERTPORTAL_NOTIFY_TIMEZONE", "UTC"), "IANA time zone of the quiet hours, e.g. Asia/Seoul (CERTPORTAL_NOTIFY_TIMEZONE)")
	fs.StringVar(&quietChannels, "notify-quiet-channels", env("CERTPORTAL_NOTIFY_QUIET_CHANNELS", ""), "channels held in quiet hours, default email,webhook; add helpdesk to hold its copies too (CERTPORTAL_NOTIFY_QUIET_CHANNELS)")
	fs.StringVar(&c.NotifyEmailMetadata, "notify-email-metadata", env("CERTPORTAL_NOTIFY_EMAIL_METADATA", ""), "Vault entity metadata key with an owner's address, e.g. email; unset or empty: <user>@<email domain> (CERTPORTAL_NOTIFY_EMAIL_METADATA)")
	fs.StringVar(&thresholds, "notify-thresholds", env("CERTPORTAL_NOTIFY_THRESHOLDS", ""), "comma-separated time left before expiry at which owners are reminded, default 720h,168h,72h (CERTPORTAL_NOTIFY_THRESHOLDS)")
	fs.DurationVar(&c.NotifyInterval, "notify-interval", envDuration(getenv, "CERTPORTAL_NOTIFY_INTERVAL", c.NotifyInterval), "how often serve looks for due reminders (CERTPORTAL_NOTIFY_INTERVAL)")
	fs.StringVar(&c.SMTPURL, "smtp-url", env("CERTPORTAL_SMTP_URL", ""), "mail server for reminders: smtp://[user:pass@]host:587 (STARTTLS required) or smtps://host:465 (CERTPORTAL_SMTP_URL)")
	fs.StringVar(&c.SMTPCACert, "smtp-cacert", env("CERTPORTAL_SMTP_CACERT", ""), "CA file for the mail server's certificate; default: the system's (CERTPORTAL_SMTP_CACERT)")
	fs.StringVar(&c.MailFrom, "mail-from", env("CERTPORTAL_MAIL_FROM", ""), "sender address of reminders (CERTPORTAL_MAIL_FROM)")
	fs.StringVar(&c.HelpdeskEmail, "helpdesk-email", env("CERTPORTAL_HELPDESK_EMAIL", ""), "address that gets a copy of each reminder and the escalation when a certificate expires unrenewed (CERTPORTAL_HELPDESK_EMAIL)")
	fs.StringVar(&c.NotifyWebhookFormat, "notify-webhook-format", env("CERTPORTAL_NOTIFY_WEBHOOK_FORMAT", c.NotifyWebhookFormat), "generic (signed JSON), slack or teams (CERTPORTAL_NOTIFY_WEBHOOK_FORMAT)")
	fs.StringVar(&webhookSecretFile, "notify-webhook-secret-file", env("CERTPORTAL_NOTIFY_WEBHOOK_SECRET_FILE", ""), "file with the webhook's HMAC secret (CERTPORTAL_NOTIFY_WEBHOOK_SECRET_FILE); or set CERTPORTAL_NOTIFY_WEBHOOK_SECRET")
	fs.StringVar(&c.PublicURL, "public-url", env("CERTPORTAL_PUBLIC_URL", ""), "the portal's address as users reach it, for links in reminders, e.g. https://certs.example.com (CERTPORTAL_PUBLIC_URL)")
	fs.DurationVar(&c.VaultTimeout, "vault-timeout", envDuration(getenv, "CERTPORTAL_VAULT_TIMEOUT", c.VaultTimeout), "each Vault call gives up after this; under the server's 60s write timeout (CERTPORTAL_VAULT_TIMEOUT)")
	fs.IntVar(&c.VaultMaxInFlight, "vault-max-inflight", envInt(getenv, "CERTPORTAL_VAULT_MAX_INFLIGHT", c.VaultMaxInFlight), "Vault calls under way at once; further requests get a 503 (CERTPORTAL_VAULT_MAX_INFLIGHT)")
	fs.DurationVar(&c.ClockSkewWarn, "clock-skew-warn", envDuration(getenv, "CERTPORTAL_CLOCK_SKEW_WARN", c.ClockSkewWarn), "warn in the log and on /readyz when the portal's clock and Vault's differ by more; 0: off (CERTPORTAL_CLOCK_SKEW_WARN)")
	fs.StringVar(&c.LogLevel, "log-level", env("CERTPORTAL_LOG_LEVEL", c.LogLevel), "debug, info, warn or error (CERTPORTAL_LOG_LEVEL)")
	offboardShare := c.offboardFlags(fs, getenv)
	c.reconcileFlags(fs, getenv)
	fs.IntVar(&c.ReconcileConcurrency, "reconcile-concurrency", envInt(getenv, "CERTPORTAL_RECONCILE_CONCURRENCY", c.ReconcileConcurrency),
		"certificate reads a reconciliation keeps in flight towards Vault, 1 to 64, under vault-max-inflight (CERTPORTAL_RECONCILE_CONCURRENCY)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	c.derivePerUserMax(fs, getenv)
	if c.OffboardMaxShare, err = ParseShare(*offboardShare); err != nil {
		return Config{}, fmt.Errorf("offboard-max-share: %w", err)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.TrustedProxies, err = ParsePrefixes(*proxies); err != nil {
		return Config{}, fmt.Errorf("trusted-proxies: %w", err)
	}
	if c.LoginNetworkLimits, err = ParseNetworkLimits(*networkLimits); err != nil {
		return Config{}, fmt.Errorf("login-network-limits: %w", err)
	}
	if v := getenv("CERTPORTAL_MAX_BODY_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return Config{}, fmt.Errorf("CERTPORTAL_MAX_BODY_BYTES: %w", err)
		}
		c.MaxBodyBytes = n
	}
	c.AppRoleSecretID = getenv("CERTPORTAL_APPROLE_SECRET_ID")
	// The webhook URL only from the environment: as a flag it would show
	// in ps, and Slack's and Teams' URLs are credentials.
	c.NotifyWebhook = getenv("CERTPORTAL_NOTIFY_WEBHOOK")
	if thresholds != "" {
		list, err := ParseTTLs(thresholds)
		if err != nil {
			return Config{}, fmt.Errorf("notify-thresholds: %w", err)
		}
		c.NotifyThresholds = list
	}
	if c.NotifyExpired, err = envBoolDefault(getenv, "CERTPORTAL_NOTIFY_EXPIRED", true); err != nil {
		return Config{}, err
	}
	if c.NotifyQuiet, err = ParseQuietHours(quietHours, quietTZ, quietChannels); err != nil {
		return Config{}, err
	}
	secret := getenv("CERTPORTAL_NOTIFY_WEBHOOK_SECRET")
	if webhookSecretFile != "" {
		b, err := os.ReadFile(webhookSecretFile)
		if err != nil {
			return Config{}, fmt.Errorf("notify webhook secret file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if secret != "" {
		c.NotifyWebhookSecret = []byte(secret)
	}
	if ttls != "" {
		list, err := ParseTTLs(ttls)
		if err != nil {
			return Config{}, err
		}
		c.TTLs = list
	}
	if c.ServiceURL, err = WhoamiURL(c.ServiceURL); err != nil {
		return Config{}, err
	}
	c.AccountName = strings.TrimSpace(c.AccountName)
	key, err := loadSessionKey(sessionKey, getenv("CERTPORTAL_SESSION_KEY"))
	if err != nil {
		return Config{}, err
	}
	c.SessionKey = key
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func envBool(getenv func(string) string, name string) (bool, error) {
	v := getenv(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", name, v)
	}
	return b, nil
}

func envBoolDefault(getenv func(string) string, name string, def bool) (bool, error) {
	if getenv(name) == "" {
		return def, nil
	}
	return envBool(getenv, name)
}

// NotifyEnabled reports whether expiry reminders have a channel to go to.
func (c Config) NotifyEnabled() bool { return c.SMTPURL != "" || c.NotifyWebhook != "" }

func envInt(getenv func(string) string, name string, def int) int {
	if v := getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return -1 // Validate names it
		}
		return n
	}
	return def
}

func envDuration(getenv func(string) string, name string, def time.Duration) time.Duration {
	if v := getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		// An unparsable value must not silently become the default:
		// Validate rejects a negative duration with the variable named.
		return -1
	}
	return def
}

// WhoamiURL checks CERTPORTAL_SERVICE_URL and returns the page the
// dashboard links to: the URL itself, or with /secure/whoami (the Nginx
// template's page) when it names only the site.
func WhoamiURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return "", fmt.Errorf("service-url %q: want https://host[:port][/path] (the protected site), without credentials", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/secure/whoami"
	}
	return u.String(), nil
}

// ParseTTLs parses "24h,168h" into a sorted, de-duplicated list.
func ParseTTLs(s string) ([]time.Duration, error) {
	seen := map[time.Duration]bool{}
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("ttls: %q is not a positive duration like 720h", f)
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("ttls: at least one validity is required")
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

func loadSessionKey(file, inline string) ([]byte, error) {
	raw := inline
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("session key file: %w", err)
		}
		raw = string(b)
	}
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, nil
	}
	for _, dec := range []func(string) ([]byte, error){hex.DecodeString, base64.StdEncoding.DecodeString, base64.RawURLEncoding.DecodeString} {
		if b, err := dec(raw); err == nil && len(b) >= 32 {
			return b, nil
		}
	}
	// The key's value is deliberately not echoed.
	return nil, errors.New("session key: want at least 32 bytes, hex or base64 encoded")
}

// Validate checks every field and names the first bad one.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q: want host:port", c.Listen)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("metrics-listen %q: want host:port (CERTPORTAL_METRICS_LISTEN)", c.MetricsListen)
		}
		if c.MetricsListen == c.Listen {
			return fmt.Errorf("metrics-listen %q: the same address as listen; give the metrics a port of their own or leave it empty (CERTPORTAL_METRICS_LISTEN)", c.MetricsListen)
		}
	}
	if strings.TrimSpace(c.DB) == "" {
		return errors.New("db: required")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls-cert and tls-key go together")
	}
	u, err := url.Parse(c.VaultAddr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("vault-addr %q: want http(s)://host:port", c.VaultAddr)
	}
	for name, v := range map[string]string{"userpass-mount": c.UserpassMount, "pki-mount": c.PKIMount, "role": c.Role,
		"onbehalf-role": c.OnBehalfRole, "user-policy": c.UserPolicy, "helpdesk-policy": c.HelpdeskPolicy, "auditor-policy": c.AuditorPolicy} {
		if !validName(v) {
			return fmt.Errorf("%s %q: want letters, digits, '-', '_' or '/'", name, v)
		}
	}
	if err := CheckDeviceKeys(c.DeviceKeys); err != nil {
		return err
	}
	if c.HelpdeskIssueOnBehalf && c.OnBehalfRole == c.Role {
		return errors.New("onbehalf-role: must differ from role (the users' templated role)")
	}
	if !validDomain(c.EmailDomain) {
		return fmt.Errorf("email-domain %q: want a DNS name like example.com", c.EmailDomain)
	}
	if c.SessionIdle <= 0 || c.SessionAbsolute <= 0 || c.SessionIdle > c.SessionAbsolute {
		return errors.New("session-idle and session-absolute: want positive durations, idle not longer than absolute")
	}
	if c.SessionRecheck <= 0 {
		return errors.New("session-recheck: want a positive duration")
	}
	if c.SessionSweep <= 0 {
		return errors.New("session-sweep: want a positive duration")
	}
	if c.MetricsInterval < time.Second {
		return errors.New("metrics-interval: want at least 1s (CERTPORTAL_METRICS_INTERVAL)")
	}
	if len(c.TTLs) == 0 {
		return errors.New("ttls: at least one validity is required")
	}
	found := false
	for _, t := range c.TTLs {
		found = found || t == c.DefaultTTL
	}
	if !found {
		return fmt.Errorf("default-ttl %s: must be one of ttls", c.DefaultTTL)
	}
	if c.AppRoleRoleID == "" || (c.AppRoleSecretID == "" && c.AppRoleSecretIDFile == "") {
		return errors.New("approle: the portal needs its own Vault identity: set CERTPORTAL_APPROLE_ROLE_ID and CERTPORTAL_APPROLE_SECRET_ID_FILE (written by `certportal setup --approle-out DIR`)")
	}
	if !validName(c.AppRoleMount) {
		return fmt.Errorf("approle-mount %q: want letters, digits, '-', '_' or '/'", c.AppRoleMount)
	}
	if c.MaxActive < 1 || c.MaxActive > 100 {
		return errors.New("max-active: want 1 to 100 (CERTPORTAL_MAX_ACTIVE)")
	}
	if c.LoginMaxFailures < 0 || c.LoginFailureWindow <= 0 {
		return errors.New("login-max-failures and login-failure-window: want a count of 0 or more (0: off) and a positive duration")
	}
	if c.MFAPending <= 0 || c.MFAPending > 300*time.Second {
		return fmt.Errorf("mfa pending %s: want more than 0 and at most 300s (Vault's window)", c.MFAPending)
	}
	if c.MFAStepUp <= 0 || c.MFAStepUp > 24*time.Hour {
		return fmt.Errorf("mfa step-up %s: want more than 0 and at most 24h", c.MFAStepUp)
	}
	if c.DeniedWindow <= 0 || c.DeniedWindow > time.Hour {
		return errors.New("denied-window: want a positive duration up to 1h (CERTPORTAL_DENIED_WINDOW)")
	}
	if c.LoginUserMaxFailures < 0 || c.LoginUserWindow < 2*time.Second {
		return errors.New("login-user-max-failures and login-user-window: want a count of 0 or more (0: off) and at least 2s (Vault counts in seconds)")
	}
	// setup puts Vault's lockout threshold at the per-username limit + 5
	// (setup.UserLockout); device cookies let a name's count go this much
	// above the limit, so 4 keeps it below Vault's threshold.
	if c.LoginDeviceMaxFailures < 0 || c.LoginDeviceMaxFailures > MaxLoginDeviceFailures {
		return fmt.Errorf("login-device-max-failures: want 0 (off) to %d: more would let a name's failures reach Vault's lockout, which setup puts 5 above the per-username limit (CERTPORTAL_LOGIN_DEVICE_MAX_FAILURES)", MaxLoginDeviceFailures)
	}
	if c.LoginDeviceTTL < time.Hour || c.LoginDeviceTTL > 400*24*time.Hour {
		return errors.New("login-device-ttl: want 1h to 400 days, the longest a browser keeps a cookie (CERTPORTAL_LOGIN_DEVICE_TTL)")
	}
	if c.LoginFailureFloor < 0 || c.LoginFailureFloor > time.Minute {
		return errors.New("login-failure-floor: want a duration from 0 to 1m (CERTPORTAL_LOGIN_FAILURE_FLOOR)")
	}
	if c.ExpiringSoon < 0 {
		return errors.New("expiring-soon: want a positive duration (CERTPORTAL_EXPIRING_SOON)")
	}
	if c.VaultTimeout <= 0 || c.VaultTimeout > 50*time.Second {
		return errors.New("vault-timeout: want a positive duration up to 50s, under the server's 60s write timeout (CERTPORTAL_VAULT_TIMEOUT)")
	}
	if c.VaultMaxInFlight < 1 || c.VaultMaxInFlight > 10000 {
		return errors.New("vault-max-inflight: want 1 to 10000 (CERTPORTAL_VAULT_MAX_INFLIGHT)")
	}
	// Under 2s the estimate's own error (Date has whole seconds, plus half
	// a round trip) would warn about nothing.
	if c.ClockSkewWarn != 0 && (c.ClockSkewWarn < 2*time.Second || c.ClockSkewWarn > 24*time.Hour) {
		return errors.New("clock-skew-warn: want 0 (off) or 2s to 24h (CERTPORTAL_CLOCK_SKEW_WARN)")
	}
	if err := c.validateOffboard(); err != nil {
		return err
	}
	if err := c.validateReconcile(); err != nil {
		return err
	}
	if c.ReconcileConcurrency < 1 || c.ReconcileConcurrency > 64 || c.ReconcileConcurrency >= c.VaultMaxInFlight {
		return errors.New("reconcile-concurrency: want 1 to 64, and fewer than vault-max-inflight so requests keep room (CERTPORTAL_RECONCILE_CONCURRENCY)")
	}
	if c.MaxBodyBytes < 1024 {
		return errors.New("max body bytes: want at least 1024")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	return c.validateNotify()
}

// validateNotify checks the reminder settings; the SMTP URL itself is
// parsed by notify.ParseSMTPURL when the runner is built.
func (c Config) validateNotify() error {
	if c.NotifyInterval < time.Minute {
		return errors.New("notify-interval: want at least 1m (CERTPORTAL_NOTIFY_INTERVAL)")
	}
	switch c.NotifyWebhookFormat {
	case "generic", "slack", "teams":
	default:
		return fmt.Errorf("notify-webhook-format %q: want generic, slack or teams", c.NotifyWebhookFormat)
	}
	if c.HelpdeskEmail != "" && c.SMTPURL == "" {
		return errors.New("helpdesk-email: needs CERTPORTAL_SMTP_URL to send to it")
	}
	if err := validEmailMetadata(c.NotifyEmailMetadata); err != nil {
		return err
	}
	if c.SMTPURL != "" && c.MailFrom == "" {
		return errors.New("mail-from: required with CERTPORTAL_SMTP_URL")
	}
	if c.NotifyWebhook != "" {
		// Not quoted: the URL may hold a token.
		u, err := url.Parse(c.NotifyWebhook)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("CERTPORTAL_NOTIFY_WEBHOOK: want an http(s) URL")
		}
	}
	if c.NotifyEnabled() || c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("public-url %q: reminders and enrolment links are built from it, so set CERTPORTAL_PUBLIC_URL to the portal's address, e.g. https://certs.example.com", c.PublicURL)
		}
	}
	return nil
}

// ParsePrefixes reads a comma-separated list of IP addresses and CIDR
// prefixes; an address stands for itself alone.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%q: want an IP address or a CIDR like 10.0.0.0/8", f)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				// Peers are compared unmapped: ::ffff:10.0.0.0/104 is 10.0.0.0/8.
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			if p.Bits() == 0 {
				return nil, fmt.Errorf("%q trusts every address: any client could choose the address it is recorded with; list your proxies", f)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q: want an IP address or a CIDR like 10.0.0.0/8", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func validName(s string) bool {
	if s == "" || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '/') {
			return false
		}
	}
	return true
}

func validDomain(s string) bool {
	if s == "" || len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// Per-username login limits: the defaults setup tunes Vault's lockout
// against, so that serve and setup agree without flags.
const (
	DefaultLoginUserMaxFailures = 5
	DefaultLoginUserWindow      = 5 * time.Minute
	// DefaultSessionAbsolute is serve's absolute session timeout, and the
	// token max TTL setup gives the userpass mount to match it.
	DefaultSessionAbsolute = 8 * time.Hour
	// DefaultLoginDeviceMaxFailures and its bound: see Validate.
	DefaultLoginDeviceMaxFailures = 3
	MaxLoginDeviceFailures        = 4
)

// NetworkLimit bounds failed logins from one network wider than an address.
type NetworkLimit struct {
	IPv6 bool
	Bits int
	Max  int
}

// DefaultNetworkLimits: an IPv4 /24 and an IPv6 /56 four times the
// per-address limit's default, an IPv6 /48 sixteen times.
func DefaultNetworkLimits() []NetworkLimit {
	return []NetworkLimit{{Bits: 24, Max: 80}, {IPv6: true, Bits: 56, Max: 80}, {IPv6: true, Bits: 48, Max: 320}}
}

// ParseNetworkLimits reads "ipv4/24=80,ipv6/48=320".
func ParseNetworkLimits(s string) ([]NetworkLimit, error) {
	var out []NetworkLimit
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		fam, rest, ok1 := strings.Cut(f, "/")
		bits, max, ok2 := strings.Cut(rest, "=")
		b, err1 := strconv.Atoi(bits)
		m, err2 := strconv.Atoi(max)
		n := NetworkLimit{IPv6: fam == "ipv6", Bits: b, Max: m}
		width := 32
		if n.IPv6 {
			width = 64
		}
		if !ok1 || !ok2 || err1 != nil || err2 != nil || (fam != "ipv4" && fam != "ipv6") || b < 8 || b >= width || m < 1 {
			return nil, fmt.Errorf("%q: want ipv4/<8-31>=<count> or ipv6/<8-63>=<count>", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// FormatNetworkLimits is the inverse of ParseNetworkLimits.
func FormatNetworkLimits(ls []NetworkLimit) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		fam := "ipv4"
		if l.IPv6 {
			fam = "ipv6"
		}
		parts[i] = fmt.Sprintf("%s/%d=%d", fam, l.Bits, l.Max)
	}
	return strings.Join(parts, ",")
}

// CheckDeviceKeys accepts the device-key modes (CERTPORTAL_DEVICE_KEYS) serve
// and setup both read.
func CheckDeviceKeys(mode string) error {
	switch mode {
	case "off", "offered", "required":
		return nil
	}
	return fmt.Errorf("device-keys %q: want off, offered or required", mode)
}
