// Package vault is certportal's adapter for HashiCorp Vault: login, issuance
// with the user's own token, token revocation and health, behind small methods
// whose errors are classified for the caller.
package vault

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/bundle"
)

// Errors callers branch on. Vault's own message is never part of them, so it
// cannot leak into a page; the wrapped cause is for logs.
var (
	ErrInvalidCredentials = errors.New("vault: invalid credentials")
	ErrPermissionDenied   = errors.New("vault: permission denied")
	ErrRefused            = errors.New("vault: request refused")
	ErrUnavailable        = errors.New("vault: unavailable")
	ErrNotFound           = errors.New("vault: not found")
	// ErrNoAnswer (always with ErrUnavailable): the request went to Vault
	// and no answer came back — it timed out, or the connection was reset
	// or closed — so Vault may well have acted on it: a login it checked
	// and counted towards its lockout. Callers must not treat it as never
	// sent.
	ErrNoAnswer = errors.New("vault: no answer in time")
	// ErrNotActed (always with ErrUnavailable): Vault certainly did nothing
	// with the request — the portal never sent it (no place among the calls
	// under way, no connection to Vault) or Vault turned it away before any
	// work (sealed). Any other failure, a timeout above all, may come after
	// Vault acted: a certificate it signed whose answer never arrived.
	ErrNotActed = errors.New("vault: request not acted on")
	// ErrMFAExpired: Vault no longer knows the pending login (its window,
	// 300 s, passed, or the login was completed): the login starts over.
	ErrMFAExpired = errors.New("vault: mfa request unknown or expired")
	// ErrMFANotEnrolled: the user's entity has no TOTP secret for the
	// method, so no code can ever satisfy the enforcement.
	ErrMFANotEnrolled = errors.New("vault: no mfa secret for the user")
)

// Config says how to reach Vault.
type Config struct {
	Addr   string
	CACert string // PEM file with the CA that signed Vault's TLS certificate
	// Timeout bounds each call (connect, request, response); 0 means 10 s.
	Timeout time.Duration
	// MaxInFlight bounds the calls under way at once (0: 64). A call that
	// finds no place within a tenth of Timeout fails as ErrUnavailable.
	MaxInFlight int
	// Now is the portal's clock (nil: time.Now): token expiry is counted
	// on it from the TTLs Vault returns, and Vault's clock is compared
	// with it (clock.go).
	Now func() time.Time
	// SkewWarn: a skew with Vault's clock above this is logged (at most
	// every ten minutes) by Logger; 0 means DefaultSkewWarn, negative never.
	SkewWarn time.Duration
	Logger   *slog.Logger
}

// Client talks to one Vault cluster. It is safe for concurrent use; it never
// holds a token of its own — every call names the token it acts with.
type Client struct {
	base    *vaultapi.Client
	chains  chainCache
	timeout time.Duration
	// slots holds one token per call under way: a slow Vault makes callers
	// fail fast instead of piling up connections, goroutines and memory.
	slots     chan struct{}
	queueWait time.Duration
	skew      *clockSkew
}

const (
	defaultTimeout     = 10 * time.Second
	defaultMaxInFlight = 64
)

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	vc := vaultapi.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault config: %w", vc.Error)
	}
	vc.Address = cfg.Addr
	// pki/issue is not idempotent: a retried request can mint a second
	// certificate nobody receives. No retries anywhere keeps that rule simple.
	vc.MaxRetries = 0
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = defaultMaxInFlight
	}
	// Every call also carries a context deadline (call); the HTTP client's
	// own timeout is the backstop for the service identity's calls, whose
	// closures use their caller's context.
	vc.Timeout = cfg.Timeout
	if t, ok := vc.HttpClient.Transport.(*http.Transport); ok {
		// Many concurrent users share one Vault; keep connections warm.
		t.MaxIdleConnsPerHost = 64
	}
	if cfg.CACert != "" {
		if err := vc.ConfigureTLS(&vaultapi.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("vault tls: %w", err)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.SkewWarn == 0:
		cfg.SkewWarn = DefaultSkewWarn
	case cfg.SkewWarn < 0:
		cfg.SkewWarn = 0
	}
	c, err := vaultapi.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	// Wrapped last: ConfigureTLS and NewClient (unix socket addresses) need
	// the *http.Transport itself. Clones share this HTTP client.
	skew := &clockSkew{now: cfg.Now, warn: cfg.SkewWarn, log: cfg.Logger}
	vc.HttpClient.Transport = &dateTransport{base: vc.HttpClient.Transport, skew: skew}
	// DefaultConfig reads VAULT_TOKEN from the environment; the portal must
	// never act with an operator token by accident.
	c.ClearToken()
	return &Client{base: c, timeout: cfg.Timeout, slots: make(chan struct{}, cfg.MaxInFlight),
		queueWait: min(cfg.Timeout/10, time.Second), skew: skew}, nil
}

// Timeout is how long one Vault call may take.
func (c *Client) Timeout() time.Duration { return c.timeout }

// call bounds one Vault call: it takes a place among the calls under way —
// waiting at most queueWait, since a full table means Vault is slow and a
// quick 503 is kinder than a long wait — and gives the call its own
// deadline. done gives the place back.
func (c *Client) call(ctx context.Context, op string) (context.Context, func(), error) {
	if err := c.acquire(ctx, op); err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	return cctx, func() { cancel(); <-c.slots }, nil
}

func (c *Client) acquire(ctx context.Context, op string) error {
	select {
	case c.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(c.queueWait)
	defer t.Stop()
	select {
	case c.slots <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("%s: %d Vault calls already under way: %w: %w", op, cap(c.slots), ErrNotActed, ErrUnavailable)
	case <-ctx.Done():
		return fmt.Errorf("%s: %v: %w: %w", op, ctx.Err(), ErrNotActed, ErrUnavailable)
	}
}

// InFlight is the number of Vault calls under way (for tests and metrics).
func (c *Client) InFlight() int { return len(c.slots) }

// Addr is the Vault address this client talks to.
func (c *Client) Addr() string { return c.base.Address() }

func (c *Client) withToken(token string) (*vaultapi.Client, error) {
	// A shallow copy (vaultapi's own, with a lock of its own) shares the
	// base's configuration and connection pool and holds its own token.
	// Clone built a whole new client per call instead — DefaultConfig, a
	// fresh http.Transport configured for HTTP/2, thrown away unused —
	// about 2% of the portal's CPU per issuance. The base never has
	// callbacks, so none are dropped; SetToken changes only the copy. The
	// copy shares the base's *Config and headers: never call a setter other
	// than SetToken on it (SetClientTimeout, SetHeaders, SetNamespace ...
	// would change every client). Measured alone: 24 allocations and ~3 KB
	// per call for Clone, 1 and 176 B for the copy.
	cl := c.base.WithRequestCallbacks()
	cl.SetToken(token)
	return cl, nil
}

// Login is the result of a successful userpass login. When Vault's login
// MFA applies, Token is empty and MFARequestID names the pending login that
// ValidateMFA completes with a code.
type Login struct {
	MFARequestID string
	// MFAMethodIDs are the TOTP methods (passcode methods) the pending
	// login must satisfy; Vault keys the payload by method id.
	MFAMethodIDs []string

	Token     string
	Accessor  string
	EntityID  string
	Policies  []string
	ExpiresAt time.Time
}

// LoginUserpass logs username in at auth/<mount>/login. Every refusal is
// ErrInvalidCredentials so that callers cannot tell unknown users from wrong
// passwords.
func (c *Client) LoginUserpass(ctx context.Context, mount, username, password string) (*Login, error) {
	cl, err := c.withToken("")
	if err != nil {
		return nil, err
	}
	ctx, done, err := c.call(ctx, "login")
	if err != nil {
		return nil, err
	}
	defer done()
	path := "auth/" + strings.Trim(mount, "/") + "/login/" + url.PathEscape(username)
	secret, err := cl.Logical().WriteWithContext(ctx, path, map[string]any{"password": password})
	if err != nil {
		return nil, classify("login", err, ErrInvalidCredentials)
	}
	if secret != nil && secret.Auth != nil && secret.Auth.ClientToken == "" && secret.Auth.MFARequirement != nil {
		return mfaLogin(secret.Auth.MFARequirement)
	}
	return c.loginFrom(secret, "login")
}

// mfaLogin is the pending login Vault answered with. Only passcode methods
// (TOTP) are supported: a constraint the portal cannot satisfy is refused
// here rather than shown as a code page no code can pass.
func mfaLogin(req *vaultapi.MFARequirement) (*Login, error) {
	if req.MFARequestID == "" || len(req.MFAConstraints) == 0 {
		return nil, fmt.Errorf("login: mfa requirement without request id or constraints: %w", ErrUnavailable)
	}
	l := &Login{MFARequestID: req.MFARequestID}
	for name, c := range req.MFAConstraints {
		var ids []string
		for _, m := range c.Any {
			if m != nil && m.Type == "totp" && m.ID != "" {
				ids = append(ids, m.ID)
			}
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("login: mfa enforcement %q has no TOTP method: %w", name, ErrRefused)
		}
		// One method of each enforcement satisfies it; the first is the
		// one the user's authenticator holds a secret for.
		l.MFAMethodIDs = append(l.MFAMethodIDs, ids[0])
	}
	slices.Sort(l.MFAMethodIDs)
	l.MFAMethodIDs = slices.Compact(l.MFAMethodIDs)
	return l, nil
}

// ValidateMFA completes a pending login with a TOTP code
// (sys/mfa/validate, unauthenticated). A wrong, reused or rate-limited code
// is ErrInvalidCredentials and Vault keeps the pending login for a retry;
// ErrMFAExpired means the login must start over; ErrMFANotEnrolled means
// the user has no secret to produce a code from.
func (c *Client) ValidateMFA(ctx context.Context, requestID string, methodIDs []string, code string) (*Login, error) {
	cl, err := c.withToken("")
	if err != nil {
		return nil, err
	}
	payload := map[string]any{}
	for _, id := range methodIDs {
		payload[id] = []string{code}
	}
	secret, err := cl.Sys().MFAValidateWithContext(ctx, requestID, payload)
	if err != nil {
		var re *vaultapi.ResponseError
		if errors.As(err, &re) && re.StatusCode >= 400 && re.StatusCode < 500 {
			// Vault's messages are the only way to tell these apart; they
			// are matched, never shown.
			msg := strings.Join(re.Errors, " ")
			switch {
			case strings.Contains(msg, "invalid request ID"):
				return nil, fmt.Errorf("mfa validate: status %d: %w", re.StatusCode, ErrMFAExpired)
			case strings.Contains(msg, "not present in entity") || strings.Contains(msg, "does not contain the TOTP secret"):
				return nil, fmt.Errorf("mfa validate: status %d: %w", re.StatusCode, ErrMFANotEnrolled)
			}
		}
		return nil, classify("mfa validate", err, ErrInvalidCredentials)
	}
	return c.loginFrom(secret, "mfa validate")
}

func (c *Client) loginFrom(secret *vaultapi.Secret, op string) (*Login, error) {
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return nil, fmt.Errorf("%s: empty auth response: %w", op, ErrUnavailable)
	}
	a := secret.Auth
	return &Login{
		Token:    a.ClientToken,
		Accessor: a.Accessor,
		EntityID: a.EntityID,
		// Identity policies (the user's entity and groups) grant as much as
		// the token's own, so they count for portal roles too, here and on
		// every recheck (LookupSelf).
		Policies: append(append([]string(nil), a.TokenPolicies...), a.IdentityPolicies...),
		// A TTL counted on the portal's own clock: Vault's clock, which
		// may be off from it, never enters the comparison.
		ExpiresAt: c.skew.now().Add(time.Duration(a.LeaseDuration) * time.Second),
	}, nil
}

// RevokeSelf revokes token (logout). A token that is already gone is not an error.
func (c *Client) RevokeSelf(ctx context.Context, token string) error {
	cl, err := c.withToken(token)
	if err != nil {
		return err
	}
	ctx, done, err := c.call(ctx, "revoke token")
	if err != nil {
		return err
	}
	defer done()
	_, err = cl.Logical().WriteWithContext(ctx, "auth/token/revoke-self", nil)
	if err != nil {
		var re *vaultapi.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
			return nil
		}
		return classify("revoke token", err, ErrRefused)
	}
	return nil
}

// TokenInfo is what Vault says of a token now.
type TokenInfo struct {
	// Policies are the token's own policies and its identity policies
	// (entity and groups). Identity policies are live: an operator who
	// takes one from a user's entity takes it from every token at once,
	// while a token's own policies are fixed when it is created.
	Policies  []string
	ExpiresAt time.Time // zero for a token that does not expire
}

// LookupSelf asks Vault about token with the token itself
// (auth/token/lookup-self, which Vault's default policy allows). A revoked,
// expired or unknown token is ErrPermissionDenied; an unreachable or sealed
// Vault is ErrUnavailable.
func (c *Client) LookupSelf(ctx context.Context, token string) (*TokenInfo, error) {
	cl, err := c.withToken(token)
	if err != nil {
		return nil, err
	}
	ctx, done, err := c.call(ctx, "token lookup")
	if err != nil {
		return nil, err
	}
	defer done()
	secret, err := cl.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		// Every 4xx means this token no longer opens anything.
		return nil, classify("token lookup", err, ErrPermissionDenied)
	}
	if secret == nil || secret.Data == nil {
		return nil, fmt.Errorf("token lookup: empty response: %w", ErrUnavailable)
	}
	info := &TokenInfo{}
	for _, k := range []string{"policies", "identity_policies"} {
		list, _ := secret.Data[k].([]any)
		for _, x := range list {
			if p, ok := x.(string); ok {
				info.Policies = append(info.Policies, p)
			}
		}
	}
	ttl, err := secret.TokenTTL()
	if err != nil {
		return nil, fmt.Errorf("token lookup: ttl: %w", ErrUnavailable)
	}
	if ttl > 0 {
		info.ExpiresAt = c.skew.now().Add(ttl) // on the portal's clock, as at login
	}
	return info, nil
}

// IssueRequest asks a PKI role for a certificate.
type IssueRequest struct {
	Mount      string
	Role       string
	CommonName string
	TTL        time.Duration
}

// Issued is a certificate Vault just minted, with its private key.
type Issued struct {
	Certificate *x509.Certificate
	PrivateKey  crypto.Signer
	Chain       []*x509.Certificate // issuing CA first, up to the root; shared between calls, read only
	Serial      string              // Vault's colon-separated hex form
}

// Issue calls <mount>/issue/<role> with the caller's token. It is called once:
// a failure after Vault signed must not be retried into a second certificate.
func (c *Client) Issue(ctx context.Context, token string, req IssueRequest) (*Issued, error) {
	cl, err := c.withToken(token)
	if err != nil {
		return nil, err
	}
	data := map[string]any{
		"common_name":          req.CommonName,
		"format":               "pem",
		"private_key_format":   "pkcs8",
		"exclude_cn_from_sans": false,
	}
	if req.TTL > 0 {
		data["ttl"] = fmt.Sprintf("%ds", int64(req.TTL/time.Second))
	}
	path := strings.Trim(req.Mount, "/") + "/issue/" + url.PathEscape(req.Role)
	ctx, done, err := c.call(ctx, "issue certificate")
	if err != nil {
		return nil, err
	}
	// A deadline that passes after the request left may leave a certificate
	// Vault signed and nobody received: reconciliation finds it (vault_only)
	// and revokes it after its grace period.
	secret, err := cl.Logical().WriteWithContext(ctx, path, data)
	done()
	if err != nil {
		return nil, classify("issue certificate", err, ErrRefused)
	}
	if secret == nil || secret.Data == nil {
		return nil, fmt.Errorf("issue certificate: empty response: %w", ErrUnavailable)
	}
	str := func(k string) string { s, _ := secret.Data[k].(string); return s }
	d := issuedData{Certificate: str("certificate"), PrivateKey: str("private_key"), IssuingCA: str("issuing_ca"),
		SerialNumber: str("serial_number")}
	if d.PrivateKey == "" {
		return nil, errors.New("issue certificate: no private key in response")
	}
	if raw, ok := secret.Data["ca_chain"].([]any); ok {
		for _, r := range raw {
			s, _ := r.(string)
			d.CAChain = append(d.CAChain, s)
		}
	}
	return c.parseIssued(&d)
}

// SignRequest asks a PKI role to sign a CSR whose key never left the
// user's device. CommonName is the name the certificate gets: the role
// (use_csr_common_name=false, use_csr_sans=false) ignores the CSR's.
type SignRequest struct {
	Mount      string
	Role       string
	CSR        string // PEM
	CommonName string
	TTL        time.Duration
}

// Sign calls <mount>/sign/<role> with the caller's token. Like Issue it is
// called once and never retried. The result has no PrivateKey.
func (c *Client) Sign(ctx context.Context, token string, req SignRequest) (*Issued, error) {
	cl, err := c.withToken(token)
	if err != nil {
		return nil, err
	}
	data := map[string]any{
		"csr":                  req.CSR,
		"common_name":          req.CommonName,
		"format":               "pem",
		"exclude_cn_from_sans": false,
	}
	if req.TTL > 0 {
		data["ttl"] = fmt.Sprintf("%ds", int64(req.TTL/time.Second))
	}
	path := strings.Trim(req.Mount, "/") + "/sign/" + url.PathEscape(req.Role)
	ctx, done, err := c.call(ctx, "sign certificate")
	if err != nil {
		return nil, err
	}
	secret, err := cl.Logical().WriteWithContext(ctx, path, data)
	done()
	if err != nil {
		return nil, classify("sign certificate", err, ErrRefused)
	}
	if secret == nil || secret.Data == nil {
		return nil, fmt.Errorf("sign certificate: empty response: %w", ErrUnavailable)
	}
	str := func(k string) string { s, _ := secret.Data[k].(string); return s }
	d := issuedData{Certificate: str("certificate"), IssuingCA: str("issuing_ca"), SerialNumber: str("serial_number")}
	if raw, ok := secret.Data["ca_chain"].([]any); ok {
		for _, r := range raw {
			s, _ := r.(string)
			d.CAChain = append(d.CAChain, s)
		}
	}
	return c.parseIssued(&d)
}

// issuedData is the part of an issue response the portal uses.
type issuedData struct {
	Certificate, PrivateKey, IssuingCA, SerialNumber string
	CAChain                                          []string
}

func (c *Client) parseIssued(d *issuedData) (*Issued, error) {
	certs, err := parseCerts(d.Certificate)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("issue certificate: bad certificate in response: %v", err)
	}
	// A signed CSR comes back without a key: it stayed on the device.
	var signer crypto.Signer
	if d.PrivateKey != "" {
		keyBlock, _ := pem.Decode([]byte(d.PrivateKey))
		if keyBlock == nil {
			return nil, errors.New("issue certificate: no private key in response")
		}
		k, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
		if err != nil {
			return nil, fmt.Errorf("issue certificate: parse private key: %w", err)
		}
		var ok bool
		if signer, ok = k.(crypto.Signer); !ok {
			return nil, errors.New("issue certificate: private key cannot sign")
		}
	}
	chainPEM := strings.Join(d.CAChain, "\n")
	if chainPEM == "" {
		chainPEM = d.IssuingCA
	}
	chain, err := c.chains.parse(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("issue certificate: bad ca_chain: %w", err)
	}
	return &Issued{Certificate: certs[0], PrivateKey: signer, Chain: chain, Serial: d.SerialNumber}, nil
}

// chainCache keeps the parsed CA chain: every issuance returns the same one
// until the CA rotates, so it is parsed once, not per issuance. A changed
// chain is parsed and kept; the cache never holds more than a few chains.
type chainCache struct {
	mu     sync.Mutex
	chains map[string][]*x509.Certificate
}

const maxCachedChains = 4

func (cc *chainCache) parse(pemChain string) ([]*x509.Certificate, error) {
	cc.mu.Lock()
	chain, ok := cc.chains[pemChain]
	cc.mu.Unlock()
	if ok {
		return chain, nil
	}
	chain, err := parseCerts(pemChain)
	if err != nil {
		return nil, err
	}
	cc.mu.Lock()
	if cc.chains == nil || len(cc.chains) >= maxCachedChains {
		cc.chains = map[string][]*x509.Certificate{}
	}
	cc.chains[pemChain] = chain
	cc.mu.Unlock()
	return chain, nil
}

func parseCerts(p string) ([]*x509.Certificate, error) { return ParseCertificates([]byte(p)) }

// ParseCertificates parses every CERTIFICATE block of a PEM bundle, skipping
// other block types (bundle.ParseCertificates).
func ParseCertificates(rest []byte) ([]*x509.Certificate, error) {
	return bundle.ParseCertificates(rest)
}

// CAChain returns the PEM chain of the mount's default issuer (issuing CA
// first). The endpoint is unauthenticated in Vault.
func (c *Client) CAChain(ctx context.Context, mount string) ([]byte, error) {
	cl, err := c.withToken("")
	if err != nil {
		return nil, err
	}
	ctx, done, err := c.call(ctx, "read CA chain")
	if err != nil {
		return nil, err
	}
	defer done()
	resp, err := cl.Logical().ReadRawWithContext(ctx, strings.Trim(mount, "/")+"/cert/ca_chain")
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return nil, classify("read CA chain", err, ErrRefused)
	}
	var sec vaultapi.Secret
	if err := resp.DecodeJSON(&sec); err != nil {
		return nil, fmt.Errorf("read CA chain: %w", err)
	}
	chain, _ := sec.Data["certificate"].(string)
	if strings.TrimSpace(chain) == "" {
		return nil, fmt.Errorf("read CA chain: empty: %w", ErrUnavailable)
	}
	return []byte(strings.TrimSpace(chain) + "\n"), nil
}

// Health returns nil when Vault is reachable, initialised and unsealed.
func (c *Client) Health(ctx context.Context) error {
	cl, err := c.withToken("")
	if err != nil {
		return err
	}
	// Health takes no place among the calls under way: a portal busy with
	// issuance is still ready. Its deadline is its own.
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	h, err := cl.Sys().HealthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("health: %v: %w", err, ErrUnavailable)
	}
	if !h.Initialized || h.Sealed {
		return fmt.Errorf("health: initialized=%v sealed=%v: %w", h.Initialized, h.Sealed, ErrUnavailable)
	}
	return nil
}

// sealedMessage is the error a sealed Vault answers every request with
// (consts.ErrSealed).
const sealedMessage = "Vault is sealed"

// classify maps an error from vault/api onto the package's sentinel errors.
// refusal is what a 4xx means for this call.
func classify(op string, err error, refusal error) error {
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == http.StatusServiceUnavailable && slices.Contains(re.Errors, sealedMessage):
			// A sealed Vault answers before routing the request anywhere;
			// sealing waits for the requests under way to finish.
			return fmt.Errorf("%s: status %d, sealed: %w: %w", op, re.StatusCode, ErrNotActed, ErrUnavailable)
		case re.StatusCode == http.StatusForbidden && refusal != ErrInvalidCredentials:
			return fmt.Errorf("%s: status %d: %w", op, re.StatusCode, ErrPermissionDenied)
		case re.StatusCode >= 400 && re.StatusCode < 500 && re.StatusCode != http.StatusTooManyRequests:
			return fmt.Errorf("%s: status %d: %w", op, re.StatusCode, refusal)
		default:
			return fmt.Errorf("%s: status %d: %w", op, re.StatusCode, ErrUnavailable)
		}
	}
	// A transport failure arrives as *url.Error, whose text names the
	// request's URL: for a login, the username as typed, which may be a
	// password typed into the wrong field. Only its cause is kept.
	var ue *url.Error
	transport := errors.As(err, &ue)
	if transport {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		// No connection, so nothing was sent, whether refused or timed out.
		return fmt.Errorf("%s: %s: %w: %w", op, scrub(oe.Error()), ErrNotActed, ErrUnavailable)
	}
	if transport || errors.Is(err, context.DeadlineExceeded) {
		// Connected, then no answer: timed out, reset, or closed. The
		// request may have reached Vault and been acted on.
		return fmt.Errorf("%s: %s: %w: %w", op, scrub(err.Error()), ErrNoAnswer, ErrUnavailable)
	}
	return fmt.Errorf("%s: %w", op, errors.Join(ErrUnavailable, errors.New(scrub(err.Error()))))
}

// scrub keeps only the first line of an error; vault/api puts response bodies
// on following lines, which may echo request data.
func scrub(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
