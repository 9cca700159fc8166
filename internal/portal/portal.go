package portal

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/bundle"
	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/vault"
)

// Role is a portal role, read from the Vault token's policies at login.
type Role string

const (
	RoleEmployee Role = "employee"
	RoleHelpdesk Role = "helpdesk"
	RoleAuditor  Role = "auditor"
)

// Identity is a logged-in user. Token is their own Vault token: the
// credential every Vault call on their behalf is made with.
type Identity struct {
	Username  string
	Token     string
	Roles     []Role
	ExpiresAt time.Time // the token's expiry; the session cannot outlive it
	// AuthAt is when the user last proved themselves to Vault (the login,
	// or a step-up); MFA says that proof included a TOTP code.
	AuthAt time.Time
	MFA    bool
}

// Has reports whether the identity holds role r.
func (id *Identity) Has(r Role) bool { return slices.Contains(id.Roles, r) }

// Vault is what the portal needs from Vault; *vault.Client implements it.
type Vault interface {
	LoginUserpass(ctx context.Context, mount, username, password string) (*vault.Login, error)
	ValidateMFA(ctx context.Context, requestID string, methodIDs []string, code string) (*vault.Login, error)
	RevokeSelf(ctx context.Context, token string) error
	LookupSelf(ctx context.Context, token string) (*vault.TokenInfo, error)
	Issue(ctx context.Context, token string, req vault.IssueRequest) (*vault.Issued, error)
	Sign(ctx context.Context, token string, req vault.SignRequest) (*vault.Issued, error)
	CAChain(ctx context.Context, mount string) ([]byte, error)
	Health(ctx context.Context) error
}

// ServiceVault is what the portal does with its own Vault identity.
type ServiceVault interface {
	Revoke(ctx context.Context, mount, serial string) error
	ListUsers(ctx context.Context, mount string) ([]string, error)
}

// Options configure the Service.
type Options struct {
	UserpassMount  string
	PKIMount       string
	Role           string
	EmailDomain    string
	UserPolicy     string
	HelpdeskPolicy string
	AuditorPolicy  string
	TTLs           []time.Duration
	DefaultTTL     time.Duration
	MaxActive      int           // active certificates per user; 0 means 3
	ExpiringSoon   time.Duration // 0 means 14 days
	// LoginMaxFailures failed logins from one address (IPv6: one /64) within
	// LoginFailureWindow make it wait for the window's end; 0 means off.
	// LoginNetworkLimits bound wider networks (an IPv6 /48, say) the same way.
	LoginMaxFailures   int
	LoginFailureWindow time.Duration
	LoginNetworkLimits []NetworkLimit
	// LoginUserMaxFailures failed logins against one submitted username
	// (existing or not) make further attempts for it wait until
	// LoginUserWindow has passed since the last counted one; 0 means off.
	// Counted in the store, so replicas on PostgreSQL share the count.
	LoginUserMaxFailures int
	LoginUserWindow      time.Duration
	// LoginFailureFloor is the least time every failed login takes, from the
	// request's start, so that Vault's fast and slow refusals look alike.
	LoginFailureFloor time.Duration
	// NameKey keys the hashes that stand for usernames the portal does not
	// know, in the trail, the log and the throttle table. Nil: a random key.
	NameKey []byte
	// LoginDeviceMaxFailures: a browser holding a device token for the
	// name it logs in as (device.go) is exempt from the per-username limit,
	// but may fail this many times per LoginUserWindow before it is
	// treated as a stranger again; and the name's count may go this far
	// above LoginUserMaxFailures, no further. 0: device tokens are off.
	LoginDeviceMaxFailures int
	// DeviceTTL is how long a device token is honoured; 0 means
	// DefaultDeviceTTL. DeviceKey signs the tokens (nil: a random key).
	DeviceTTL time.Duration
	DeviceKey []byte
	KeyType   string           // shown in the inventory, e.g. "ec-256"
	Metrics   *metrics.Metrics // nil records nothing
	// OnBehalfRole is the Vault role helpdesk staff issue other users'
	// certificates from, with their own token. Empty switches issuing on
	// behalf off: helpdesk then never sees anyone's private key.
	OnBehalfRole string
	// DeniedWindow: refused requests of one user within it after the
	// first are recorded as one event with their count; 0 means 1 minute.
	DeniedWindow time.Duration
	// VaultTimeout is how long one Vault call may take (the Vault client
	// enforces it); the login's own bound is derived from it.
	VaultTimeout time.Duration
	// MFAPending is how long a pending MFA login is kept (never longer
	// than Vault's 300 s); 0 means DefaultMFAPending.
	MFAPending time.Duration
	// MFAEnforcement names the login enforcement enrolment reads its TOTP
	// method and userpass accessor from; "" means DefaultMFAEnforcement.
	MFAEnforcement string
	// MFAStepUp is how old the session's last proof (login or step-up)
	// may be for a download, a revocation or a helpdesk action; older:
	// the user proves themselves to Vault again (stepup.go). 0 means
	// DefaultMFAStepUp.
	MFAStepUp time.Duration
	// MFATOFU lets an enforced user without a TOTP secret enrol at their
	// first login (trust on first use, enrol.go). Off: the helpdesk's
	// one-time link is the only way in.
	MFATOFU bool
	// Offboard are the offboarding sweep's limits (offboard.go).
	Offboard OffboardOptions
	// Reconcile are the background reconciliation's (reconcile_job.go).
	Reconcile ReconcileOptions
	// DeviceKeys (DeviceKeysOff, DeviceKeysOffered, DeviceKeysRequired;
	// "" means offered) says whether users may have their key made in the
	// browser (IssueCSR) and whether the server-made key is still allowed.
	DeviceKeys string
	// Now is the portal's clock (nil: time.Now); tests set it off Vault's.
	Now func() time.Time
	// ReconcileConcurrency bounds the certificate reads a reconciliation
	// keeps in flight towards Vault; 0 means DefaultReconcileConcurrency.
	ReconcileConcurrency int
}

// Store is what the portal keeps: the inventory, the audit trail and the
// per-username login counts.
type Store interface {
	store.Certificates
	store.Audit
	store.LoginAttempts
	store.Enrolments
	store.Reconciliations
	store.Locker
	// RecordNotice: a held offboarding sweep's event and its notice to the
	// helpdesk, together (store.Notifications).
	RecordNotice(ctx context.Context, e *audit.Event, kind time.Duration, channels []string, now time.Time) error
}

// Service is the portal's use cases.
type Service struct {
	// reconcileReq queues one background reconciliation (RunReconciler),
	// with the reconciliation's lock RequestReconcile took for it.
	reconcileReq chan reconcileRequest
	vault        Vault
	service      ServiceVault
	store        Store
	opts         Options
	log          *slog.Logger
	now          func() time.Time
	// throttle refuses logins from an address with too many recent
	// failures; nil when off.
	throttle     *loginThrottle
	throttleFull throttleFullLog
	// denied counts repeated refusals instead of recording each one;
	// outbox retries revocations whose record failed (both run from Run).
	denied *deniedLimiter
	outbox *revocationOutbox
	// sessionChecks lets concurrent requests of one session share one
	// Vault lookup (session.go).
	sessionChecks checkGroup
	// users caches the userpass mount's user list: a failed login's name is
	// recorded verbatim only when it is a user the portal knows.
	users     userCache
	lastSweep atomic.Int64 // unix ms of the last sweep of stale login counts
	// mfaVault enrols users in Vault's TOTP (enrol.go): the portal's own
	// identity, when it can (nil: enrolment is off).
	mfaVault MFAEnrolVault
	// offboardVault is sv when it can read users for the offboarding
	// sweep (the real service identity can); nil otherwise.
	offboardVault OffboardVault
	// rotator is sv when it can rotate its own secret id (rotate.go).
	rotator  SecretRotator
	rotation rotationState
}

// NewService wires a Service. v acts with users' tokens; sv is the portal's
// own identity; st is the inventory.
func NewService(v Vault, sv ServiceVault, st Store, o Options, log *slog.Logger) *Service {
	if o.MaxActive <= 0 {
		o.MaxActive = 3
	}
	if o.ExpiringSoon <= 0 {
		o.ExpiringSoon = 14 * 24 * time.Hour
	}
	if o.KeyType == "" {
		o.KeyType = "ec-256"
	}
	if o.MFAEnforcement == "" {
		o.MFAEnforcement = DefaultMFAEnforcement
	}
	if o.MFAPending <= 0 || o.MFAPending > DefaultMFAPending {
		o.MFAPending = DefaultMFAPending
	}
	if o.MFAStepUp <= 0 {
		o.MFAStepUp = DefaultMFAStepUp
	}
	if o.DeniedWindow <= 0 {
		o.DeniedWindow = time.Minute
	}
	if len(o.NameKey) == 0 {
		o.NameKey = make([]byte, 32)
		_, _ = rand.Read(o.NameKey)
	}
	if len(o.DeviceKey) == 0 {
		o.DeviceKey = make([]byte, 32)
		_, _ = rand.Read(o.DeviceKey)
	}
	if o.DeviceTTL <= 0 {
		o.DeviceTTL = DefaultDeviceTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{vault: v, service: sv, store: st, opts: o, log: log, now: o.Now,
		throttle: newLoginThrottle(o.LoginMaxFailures, o.LoginFailureWindow, o.LoginNetworkLimits),
		denied:   &deniedLimiter{window: o.DeniedWindow, open: map[string]*deniedWindow{}},
		outbox:   &revocationOutbox{}, reconcileReq: make(chan reconcileRequest, 1)}
	s.sessionChecks.now = o.Now
	// The portal's identity enrols users when it is the real one
	// (*vault.Service); a narrower ServiceVault leaves enrolment off.
	s.mfaVault, _ = sv.(MFAEnrolVault)
	s.offboardVault, _ = sv.(OffboardVault)
	s.rotator, _ = sv.(SecretRotator)
	return s
}

// Options returns the service's options (for rendering forms).
func (s *Service) Options() Options { return s.opts }

// usernamePattern matches what userpass accepts in practice and what is safe
// in a certificate's CN and a file name. Anything else cannot log in.
var usernamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Login checks username and password against Vault. Every failure of the
// credentials themselves — an unknown name, a wrong password, a user Vault
// has locked, a user without any portal policy — is the same error, after
// the same time (LoginFailureFloor), so the page cannot be used to learn
// which usernames exist or which password was right. When Vault's login
// MFA applies, the password was right and the result is a pending login
// that CompleteLogin finishes with a code (mfa.go); the identity is then nil.
func (s *Service) Login(ctx context.Context, username, password string) (id *Identity, pending *PendingLogin, err error) {
	return s.LoginDevice(ctx, username, password, "")
}

// LoginDevice is Login from a browser that presented device, the device
// token an earlier login gave it ("" for none). A valid token for this
// name exempts the attempt from the per-username limit (within the
// device's own limit, see takeUserAttempt); anything else is ignored, and
// the attempt is a stranger's. Either way a failure looks the same.
func (s *Service) LoginDevice(ctx context.Context, username, password, device string) (id *Identity, pending *PendingLogin, err error) {
	return s.login(ctx, username, password, device, s.opts.MFATOFU)
}

// login is LoginDevice; with tofu, a pending login of a user who has no
// TOTP secret yet gets one (PendingLogin.NewKey, trust on first use).
func (s *Service) login(ctx context.Context, username, password, device string, tofu bool) (id *Identity, pending *PendingLogin, err error) {
	start := time.Now()
	defer func() { s.padFailure(ctx, start, err) }()
	username = NormalizeUsername(username)
	failed := &Error{Code: EUnauthorized, Message: "error.login_failed"}
	ip := RequestInfoFrom(ctx).ClientIP
	// Once an attempt is let through it runs to the end whatever the client
	// does: Vault checks and counts the password even if the client hangs
	// up, so the portal must count and record it too.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.loginTimeout())
	defer cancel()
	v := s.throttle.attempt(ip, s.now())
	s.throttled(ctx, v)
	if !v.allowed {
		// Refused before Vault is asked: the password is not tried at all.
		// The first refusal in a window is recorded; recording every one
		// would let one address fill the trail (the rest show as 429s in
		// /metrics and the log).
		if v.firstRefusal {
			if err := s.record(bg, s.newEvent(ctx, "", s.recordedName(bg, username), audit.ActionLogin, audit.OutcomeDenied, "",
				map[string]string{"reason": "too many failed logins from this address or network; further attempts in this window are refused unrecorded"})); err != nil {
				return nil, nil, err
			}
		}
		return nil, nil, &Error{Code: ETooMany, Message: "error.login_throttled", RetryAfter: v.retryAfter}
	}
	var userKey, deviceKey string
	recordFailure := func(why string, cause error) error {
		failed.Err = cause
		name := s.recordedName(bg, username)
		s.log.InfoContext(ctx, "login failed", "user", name, "reason", why, "client_ip", ip, "device", deviceKey != "")
		if err := s.record(bg, s.newEvent(ctx, "", name, audit.ActionLogin, audit.OutcomeFailure, "", deviceDetail(deviceKey, map[string]string{"reason": why}))); err != nil {
			return err
		}
		return failed
	}
	if !usernamePattern.MatchString(username) || password == "" || len(password) > 1024 {
		return nil, nil, recordFailure("malformed", nil)
	}
	userKey, deviceKey, err = s.takeUserAttempt(bg, username, device)
	if err != nil {
		s.throttle.refund(ip, s.now())
		return nil, nil, err
	}
	l, err := s.vault.LoginUserpass(bg, s.opts.UserpassMount, username, password)
	switch {
	case errors.Is(err, vault.ErrInvalidCredentials):
		return nil, nil, recordFailure("invalid credentials", err)
	case errors.Is(err, vault.ErrNoAnswer):
		// Sent, but answered too late or not at all: Vault may have
		// checked the password and counted it towards its lockout, so the
		// name's and the device's counts keep it, or a stranger keeping
		// Vault slow could go past the per-name limit and lock the user in
		// Vault. Only the address's count (the portal's own) is refunded.
		s.throttle.refund(ip, s.now())
		s.log.WarnContext(ctx, "login: no answer from Vault; the attempt counts", "user", s.recordedName(bg, username), "client_ip", ip)
		if rerr := s.record(bg, s.newEvent(ctx, "", s.recordedName(bg, username), audit.ActionLogin, audit.OutcomeFailure, "",
			deviceDetail(deviceKey, map[string]string{"reason": "no answer from vault (counted)"}))); rerr != nil {
			return nil, nil, rerr
		}
		return nil, nil, &Error{Code: EUnavailable, Message: "error.vault_unavailable_login", Err: err}
	case err != nil:
		// Not a wrong password: neither limit counts it.
		s.throttle.refund(ip, s.now())
		s.refundUserAttempt(bg, userKey)
		s.refundUserAttempt(bg, deviceKey)
		return nil, nil, &Error{Code: EUnavailable, Message: "error.vault_unavailable_login", Err: err}
	}
	if l.MFARequestID != "" {
		// The password was right: not a guess, so the address's count
		// gives it back, as after a login without MFA (the code then
		// counts on its own). The name's and the device's counts are
		// cleared only once the code is right too (CompleteLogin), so a
		// stolen password alone cannot reset them.
		s.throttle.refund(ip, s.now())
		pending, err = s.pendingLogin(bg, username, l, deviceKey)
		if err == nil && tofu {
			pending.NewKey, err = s.enrolOnFirstUse(bg, ctx, username)
		}
		if err != nil {
			return nil, nil, err
		}
		return nil, pending, nil
	}
	id, err = s.finishLogin(bg, ctx, username, l, ip, []string{userKey, deviceKey}, deviceDetail(deviceKey, nil))
	return id, nil, err
}

// deviceDetail marks a login event whose browser held a valid device token
// (and so was exempt from the per-username limit): auditors see which
// attempts past a name's limit came from the owner's browsers. Nothing of
// the token is recorded.
func deviceDetail(deviceKey string, details map[string]string) map[string]string {
	if deviceKey == "" {
		return details
	}
	if details == nil {
		details = map[string]string{}
	}
	details["device"] = "known"
	return details
}

// finishLogin turns Vault's login into an identity: roles from the token's
// policies (none: refused as a wrong password is, token given back) and the
// login recorded (no record: no session, token given back); attemptKeys
// (the name's and the device's counts) are cleared. extra is added
// to the record. bg carries the attempt's deadline, ctx the request's data.
func (s *Service) finishLogin(bg, ctx context.Context, username string, l *vault.Login, ip string, attemptKeys []string, extra map[string]string) (*Identity, error) {
	failed := &Error{Code: EUnauthorized, Message: "error.login_failed"}
	roles := s.roles(l.Policies)
	if len(roles) == 0 {
		// Valid Vault credentials without any certportal policy: deny by
		// default, and give the token back at once. The answer is the one a
		// wrong password gets, and it counts like one, or the page would
		// confirm the password; the reason goes to the trail only.
		if rerr := s.vault.RevokeSelf(bg, l.Token); rerr != nil {
			s.log.WarnContext(ctx, "revoke token of user without portal access", "user", username, "err", rerr)
		}
		if err := s.record(bg, s.newEvent(ctx, username, username, audit.ActionLogin, audit.OutcomeDenied, "", map[string]string{"reason": "no portal policy"})); err != nil {
			return nil, err
		}
		return nil, failed
	}
	s.throttle.refund(ip, s.now()) // the right password
	for _, k := range attemptKeys {
		s.clearUserAttempts(bg, k) // the name's run and the device's
	}
	roleNames := make([]string, len(roles))
	for i, r := range roles {
		roleNames[i] = string(r)
	}
	details := map[string]string{"roles": strings.Join(roleNames, ",")}
	for k, v := range extra {
		details[k] = v
	}
	if err := s.record(bg, s.newEvent(ctx, username, username, audit.ActionLogin, audit.OutcomeSuccess, "", details)); err != nil {
		// No audit record, no session: give the token back.
		if rerr := s.vault.RevokeSelf(bg, l.Token); rerr != nil {
			s.log.ErrorContext(ctx, "revoke token after audit failure", "user", username, "err", rerr)
		}
		return nil, err
	}
	return &Identity{Username: username, Token: l.Token, Roles: roles, ExpiresAt: l.ExpiresAt}, nil
}

func (s *Service) roles(policies []string) []Role {
	var roles []Role
	has := func(p string) bool { return p != "" && slices.Contains(policies, p) }
	// Every portal role can hold its own certificate: the helpdesk and
	// auditor policies setup writes include the issue capability too.
	if has(s.opts.UserPolicy) || has(s.opts.HelpdeskPolicy) || has(s.opts.AuditorPolicy) {
		roles = append(roles, RoleEmployee)
	}
	if has(s.opts.HelpdeskPolicy) {
		roles = append(roles, RoleHelpdesk)
	}
	if has(s.opts.AuditorPolicy) {
		roles = append(roles, RoleAuditor)
	}
	return roles
}

// Logout revokes the user's Vault token.
// The session ends even if Vault or the audit store fail — ending access is
// never the unsafe direction — but the failure is returned and logged.
func (s *Service) Logout(ctx context.Context, id *Identity) error {
	verr := s.vault.RevokeSelf(ctx, id.Token)
	outcome, details := audit.OutcomeSuccess, map[string]string{}
	if verr != nil {
		outcome, details["error"] = audit.OutcomeFailure, "token not revoked: vault unavailable"
	}
	aerr := s.record(ctx, s.newEvent(ctx, id.Username, id.Username, audit.ActionLogout, outcome, "", details))
	if verr != nil {
		return &Error{Code: EUnavailable, Message: "error.vault_unavailable", Err: verr}
	}
	return aerr
}

// IssueRequest is the certificate form.
type IssueRequest struct {
	Password        string
	PasswordConfirm string
	TTL             string // a Go duration that must be one of the offered TTLs
	Encryption      string // modern or compat
	RenewSerial     string // renewing this certificate of the user's
	RevokeOld       bool   // and revoking it once the new one is issued
	Label           string // the user's name for it, optional (ValidLabel)
}

// Validate checks the form against the offered options and returns the
// parsed validity and encryption.
func (r IssueRequest) Validate(o Options) (time.Duration, bundle.Encryption, error) {
	ttl, err := time.ParseDuration(r.TTL)
	if r.TTL == "" {
		ttl, err = o.DefaultTTL, nil
	}
	if err != nil || !slices.Contains(o.TTLs, ttl) {
		return 0, "", Invalid("ttl", "error.ttl_invalid")
	}
	enc, err := bundle.ParseEncryption(r.Encryption)
	if err != nil {
		return 0, "", Invalid("encryption", "error.encryption_invalid")
	}
	if len([]rune(r.Password)) < bundle.MinPasswordLen {
		return 0, "", Invalid("password", "error.password_short")
	}
	if len(r.Password) > 1024 {
		return 0, "", Invalid("password", "error.password_long")
	}
	if err := CheckPassword(r.Password); err != nil {
		return 0, "", err
	}
	if r.Password != r.PasswordConfirm {
		return 0, "", Invalid("password_confirm", "error.password_mismatch")
	}
	if _, err := ValidLabel(r.Label); err != nil {
		return 0, "", err
	}
	return ttl, enc, nil
}

// Download is a freshly built .p12.
type Download struct {
	Username   string // whose identity the certificate carries
	Filename   string // DownloadName: may hold the label's non-ASCII letters
	ASCIIName  string // the same in ASCII, for Content-Disposition's filename=
	Label      string
	IssuedAt   time.Time
	Data       []byte
	Serial     string
	Subject    string
	NotAfter   time.Time
	Encryption bundle.Encryption
	// CertificatePEM and ChainPEM: the certificate and its CA chain, for a
	// key made on the device (IssueCSR hands them to the browser).
	CertificatePEM, ChainPEM []byte
}

// Identity name for a username: the certificate's CN and email SAN.
func (s *Service) subjectFor(username string) string {
	return username + "@" + s.opts.EmailDomain
}

// Issue asks Vault, with the user's own token, for a certificate naming the
// user, records it in the inventory and packs it into a .p12 protected by the
// user's password. Vault is called once and never retried: pki/issue is not
// idempotent. If the inventory cannot be written the certificate is revoked
// with the portal's identity and nothing is handed out: no certificate exists
// that the inventory does not know.
func (s *Service) Issue(ctx context.Context, id *Identity, req IssueRequest) (*Download, error) {
	if !id.Has(RoleEmployee) {
		return nil, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	if s.DeviceKeys() == DeviceKeysRequired {
		// The operator wants keys made on users' devices only.
		return nil, &Error{Code: EForbidden, Message: "error.device_key_required"}
	}
	ttl, enc, err := req.Validate(s.opts)
	if err != nil {
		return nil, err
	}
	label, _ := ValidLabel(req.Label) // checked by Validate
	var old *store.Certificate
	if req.RenewSerial != "" {
		if old, err = s.ownCertificate(ctx, id, req.RenewSerial); err != nil {
			return nil, err
		}
	}
	replaces := ""
	if old != nil && req.RevokeOld {
		replaces = old.Serial // the old one goes as the new one comes
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	reservation, err := s.reserve(ctx, id.Username, replaces, "error.cap_reached")
	if err != nil {
		return nil, err
	}
	return s.issue(ctx, issuance{
		token: id.Token, role: s.opts.Role, actor: id.Username, username: id.Username, action: audit.ActionIssue,
		ttl: ttl, enc: enc, password: req.Password, renews: req.RenewSerial, revokeOld: old != nil && req.RevokeOld, old: old,
		reservation: reservation, label: label,
	})
}

// IssueTimeout bounds an issuance once it is under way: Vault's answer,
// the inventory and audit record and, for a renewal, the old certificate's
// revocation (two Vault calls, each bounded by the Vault timeout, plus
// store writes). Reconciliation's automatic revocation waits well past it
// (config: CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER), so it never takes a
// certificate whose record is still on its way.
func IssueTimeout(vaultTimeout time.Duration) time.Duration {
	if vaultTimeout <= 0 {
		vaultTimeout = 10 * time.Second
	}
	return 2*vaultTimeout + 10*time.Second
}

// detach lets an issuance run to the end whatever the client does, as a
// login does: once Vault is asked, the certificate, its record and the
// trail must come out whole even if the browser hangs up meanwhile (the web
// layer then records that the file was not delivered). The request's values
// (client address, request id) stay; its cancellation does not, and
// IssueTimeout bounds it instead.
func (s *Service) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), IssueTimeout(s.opts.VaultTimeout))
}

// reservationTTL bounds how long a place taken for an issuance that never
// finished (the process died between the reservation and the record, or
// Vault gave no answer and may have issued: vaultMayHaveIssued) stays
// taken. It must outlast the Vault call (CERTPORTAL_VAULT_TIMEOUT, at most 50 s) plus the inventory
// write, or a slow issuance would lose its place to another request.
const reservationTTL = 2 * time.Minute

// reserve takes one of username's places under the cap before Vault is
// asked: a count followed later by the record would let simultaneous
// requests, on one replica or several, all pass the count. replaces is a
// certificate of the user's that this issuance revokes (renewal), which then
// does not count. capMessage is the catalog key shown when the cap is full.
func (s *Service) reserve(ctx context.Context, username, replaces, capMessage string) (string, error) {
	now := s.now()
	id, err := s.store.ReserveIssuance(ctx, store.Reservation{
		Username: username, Max: s.opts.MaxActive, At: now, Expires: now.Add(reservationTTL), Replaces: replaces,
	})
	switch {
	case errors.Is(err, store.ErrCapReached):
		return "", &Error{Code: EForbidden, Message: capMessage, Err: err}
	case err != nil:
		return "", storeUnavailable(err)
	}
	return id, nil
}

// release gives back the place of an issuance that failed before it was
// recorded and that certainly left no certificate in Vault
// (vaultMayHaveIssued). Failing to is not the user's problem: the place
// frees itself after reservationTTL.
func (s *Service) release(ctx context.Context, reservation string) {
	if err := s.store.ReleaseReservation(context.WithoutCancel(ctx), reservation); err != nil {
		s.log.WarnContext(ctx, "issuance reservation not released; it expires by itself", "expires_in", reservationTTL, "err", err)
	}
}

// vaultMayHaveIssued says whether a failed pki/issue or pki/sign call may
// still have left a certificate in Vault. Only a definite refusal (permission
// denied, another 4xx) or a request Vault certainly never acted on (never
// sent, sealed) says no: after a timeout, a dropped connection, a 5xx or an
// answer the portal could not read, Vault may have signed one whose answer
// never arrived.
func vaultMayHaveIssued(err error) bool {
	return !errors.Is(err, vault.ErrPermissionDenied) && !errors.Is(err, vault.ErrRefused) && !errors.Is(err, vault.ErrNotActed)
}

// issuance is one certificate to issue, record and pack.
type issuance struct {
	token, role     string // the Vault token and role the certificate is issued with
	actor, username string // who asks, and whose identity the certificate carries
	action          string // audit action
	details         map[string]string
	ttl             time.Duration
	enc             bundle.Encryption
	password        string
	renews          string
	revokeOld       bool
	old             *store.Certificate
	reservation     string // the place under the cap taken for this issuance
	label           string // valid (ValidLabel)
	// csr (PEM) makes this a signing of a key made on the user's device:
	// pki/sign instead of pki/issue, and no .p12 (the browser builds it).
	csr string
}

func (s *Service) issue(ctx context.Context, in issuance) (*Download, error) {
	subject := s.subjectFor(in.username)
	began := time.Now()
	var issued *vault.Issued
	var err error
	if in.csr != "" {
		issued, err = s.vault.Sign(ctx, in.token, vault.SignRequest{
			Mount: s.opts.PKIMount, Role: in.role, CSR: in.csr, CommonName: subject, TTL: in.ttl,
		})
	} else {
		issued, err = s.vault.Issue(ctx, in.token, vault.IssueRequest{
			Mount: s.opts.PKIMount, Role: in.role, CommonName: subject, TTL: in.ttl,
		})
	}
	s.opts.Metrics.VaultIssue(time.Since(began))
	if err != nil {
		if vaultMayHaveIssued(err) {
			// The place stays taken until the reservation expires: the
			// certificate, if Vault made one, is vault_only to
			// reconciliation (and revoked after its grace), and the user
			// must not get one more past the cap meanwhile.
			s.log.WarnContext(ctx, "issuance: Vault may have issued without answering; its place under the cap stays taken until the reservation expires",
				"user", in.username, "expires_in", reservationTTL, "err", err)
		} else {
			s.release(ctx, in.reservation)
		}
	}
	switch {
	case errors.Is(err, vault.ErrPermissionDenied):
		// Most often an expired token; the user logs in again.
		return nil, &Error{Code: EForbidden, Message: "error.vault_denied", Err: err}
	case errors.Is(err, vault.ErrRefused):
		return nil, &Error{Code: EForbidden, Message: "error.vault_refused", Err: err}
	case errors.Is(err, vault.ErrNotActed):
		return nil, vaultUnavailable(err)
	case err != nil:
		return nil, &Error{Code: EUnavailable, Message: "error.vault_no_answer_issue", Err: err}
	}
	row := &store.Certificate{
		Serial: issued.Serial, Username: in.username, Subject: subject, KeyType: keyType(issued),
		Encryption: string(in.enc), IssuedBy: in.actor, IssuedAt: s.now(), NotAfter: issued.Certificate.NotAfter,
		Label: in.label, KeyOrigin: keyOrigin(in),
	}
	// The .p12 key derivation (about 0.8 ms of CPU) runs while the inventory
	// and audit record commits (an fsync): the user waits for the slower of
	// the two, not both.
	type encoded struct {
		data []byte
		err  error
	}
	enc1 := make(chan encoded, 1)
	if in.csr != "" {
		enc1 <- encoded{} // the key is on the device: nothing to pack
	} else {
		go func() {
			data, err := bundle.Encode(issued.PrivateKey, issued.Certificate, issued.Chain, in.password, in.enc)
			enc1 <- encoded{data, err}
		}()
	}
	details := map[string]string{
		"subject": subject, "not_before": fmtTime(issued.Certificate.NotBefore), "not_after": fmtTime(issued.Certificate.NotAfter),
		"ttl": in.ttl.String(), "key_type": row.KeyType, "encryption": string(in.enc), "renews": in.renews,
		"label": in.label, "key_origin": row.KeyOrigin,
	}
	for k, v := range in.details {
		details[k] = v
	}
	ev := s.newEvent(ctx, in.actor, in.username, in.action, audit.OutcomeSuccess, issued.Serial, details)
	recErr := s.store.RecordIssuance(ctx, in.reservation, row, ev)
	p12 := <-enc1
	if recErr != nil {
		// Fail closed: no inventory row and audit record, no certificate.
		// The record's transaction rolled back, reservation included.
		s.release(ctx, in.reservation)
		s.opts.Metrics.AuditFailure()
		s.revokeUnrecorded(ctx, issued.Serial, "inventory or audit write failed")
		return nil, &Error{Code: EUnavailable, Message: "error.audit_unavailable", Err: recErr}
	}
	if p12.err != nil {
		// Recorded but never handed out: revoke it, on the record.
		if err := s.revoke(ctx, "certportal", audit.ActionRevoke, row, store.Revocation{At: s.now(), Reason: "superseded", By: "certportal"}); err != nil {
			s.log.ErrorContext(ctx, "could not revoke certificate whose .p12 failed", "serial", issued.Serial, "err", err)
		}
		return nil, fmt.Errorf("build .p12 for %s: %w", issued.Serial, p12.err)
	}
	s.opts.Metrics.Issued(string(in.enc))
	s.log.InfoContext(ctx, "certificate issued", "user", in.username, "by", in.actor, "serial", issued.Serial,
		"subject", subject, "not_after", issued.Certificate.NotAfter.UTC(), "encryption", string(in.enc),
		"key_origin", keyOrigin(in))
	if in.revokeOld {
		if err := s.revoke(ctx, in.actor, audit.ActionRevoke, in.old, store.Revocation{At: s.now(), Reason: "superseded", By: in.actor}); err != nil {
			// The new certificate is good and recorded; the user can still
			// revoke the old one from the list.
			s.log.WarnContext(ctx, "renew: old certificate not revoked", "serial", in.old.Serial, "err", err)
		}
	}
	name, ascii := DownloadName(subject, in.label, row.IssuedAt)
	return &Download{
		Username:       in.username,
		Filename:       name,
		ASCIIName:      ascii,
		Label:          in.label,
		IssuedAt:       row.IssuedAt,
		Data:           p12.data,
		Serial:         issued.Serial,
		Subject:        subject,
		NotAfter:       issued.Certificate.NotAfter,
		Encryption:     in.enc,
		CertificatePEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issued.Certificate.Raw}),
		ChainPEM:       chainPEM(issued.Chain),
	}, nil
}

func keyOrigin(in issuance) string {
	if in.csr != "" {
		return store.KeyOriginDevice
	}
	return store.KeyOriginVault
}

func chainPEM(chain []*x509.Certificate) []byte {
	var b []byte
	for _, c := range chain {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// revokeUnrecorded revokes a certificate Vault issued in a request that then
// failed, so that it cannot be used by anyone.
func (s *Service) revokeUnrecorded(ctx context.Context, serial, why string) {
	if err := s.service.Revoke(context.WithoutCancel(ctx), s.opts.PKIMount, serial); err != nil {
		s.log.ErrorContext(ctx, "could not revoke certificate from a failed request; revoke it by hand",
			"serial", serial, "why", why, "err", err)
		return
	}
	s.log.WarnContext(ctx, "revoked certificate from a failed request", "serial", serial, "why", why)
}

func keyType(is *vault.Issued) string {
	switch k := is.Certificate.PublicKey.(type) {
	case interface{ Params() *elliptic.CurveParams }:
		return fmt.Sprintf("ec-%d", k.Params().BitSize)
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	}
	return "unknown"
}

// CAChain returns the issuing CA chain in PEM.
func (s *Service) CAChain(ctx context.Context) ([]byte, error) {
	b, err := s.vault.CAChain(ctx, s.opts.PKIMount)
	if err != nil {
		return nil, vaultUnavailable(err)
	}
	return b, nil
}

// VaultHealth returns nil when Vault is reachable and unsealed.
func (s *Service) VaultHealth(ctx context.Context) error { return s.vault.Health(ctx) }
