package vault

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// AppRole says how the portal logs in as itself.
type AppRole struct {
	Mount        string // e.g. approle
	RoleID       string
	SecretID     string // inline, or:
	SecretIDFile string // re-read at every login, so the secret id can be rotated without a restart
}

func (a AppRole) secretID() (string, error) {
	if a.SecretIDFile != "" {
		b, err := os.ReadFile(a.SecretIDFile)
		if err != nil {
			return "", fmt.Errorf("read secret id file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return a.SecretID, nil
}

// Service is the portal's own Vault identity. It does only what a user token
// must not: revoke a serial after the portal checked ownership, and list
// Vault's certificates and users. Its token is renewed before expiry and
// obtained again when renewal fails or Vault revoked it.
type Service struct {
	c    *Client
	role AppRole
	log  *slog.Logger

	mu      sync.Mutex
	token   string
	expires time.Time
	renewAt time.Time
	now     func() time.Time
	// roleName is the AppRole's name, from the login's token metadata.
	roleName string
	// relogin makes the next renewal a login: the secret id was rotated
	// (here, or in the file by another replica), and logging in with the
	// new one while the old one still works proves it early.
	relogin      bool
	seenAccessor string
}

// NewService returns the portal's identity; it logs in lazily on first use.
func (c *Client) NewService(role AppRole, log *slog.Logger) (*Service, error) {
	if role.RoleID == "" || (role.SecretID == "" && role.SecretIDFile == "") {
		return nil, errors.New("approle: role id and a secret id (or secret id file) are required")
	}
	if role.Mount == "" {
		role.Mount = "approle"
	}
	return &Service{c: c, role: role, log: log, now: c.skew.now}, nil
}

// login obtains a fresh token. Called with mu held.
func (s *Service) login(ctx context.Context) error {
	secret, err := s.role.secretID()
	if err != nil {
		return err
	}
	cl, err := s.c.withToken("")
	if err != nil {
		return err
	}
	ctx, done, err := s.c.call(ctx, "service login")
	if err != nil {
		return err
	}
	defer done()
	sec, err := cl.Logical().WriteWithContext(ctx, "auth/"+strings.Trim(s.role.Mount, "/")+"/login",
		map[string]any{"role_id": s.role.RoleID, "secret_id": secret})
	if err != nil {
		return classify("service login", err, ErrInvalidCredentials)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return fmt.Errorf("service login: empty auth: %w", ErrUnavailable)
	}
	s.setToken(sec.Auth.ClientToken, time.Duration(sec.Auth.LeaseDuration)*time.Second)
	s.roleName = sec.Auth.Metadata["role_name"]
	s.relogin = false
	s.log.InfoContext(ctx, "service identity logged in", "ttl", time.Duration(sec.Auth.LeaseDuration)*time.Second)
	return nil
}

func (s *Service) setToken(token string, ttl time.Duration) {
	now := s.now()
	s.token = token
	s.expires = now.Add(ttl)
	// Renew at two thirds of the lease, leaving a third for retries.
	s.renewAt = now.Add(ttl * 2 / 3)
}

// Token returns a usable token, renewing or logging in again as needed.
func (s *Service) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenLocked(ctx)
}

func (s *Service) tokenLocked(ctx context.Context) (string, error) {
	now := s.now()
	switch {
	case s.token == "" || !now.Before(s.expires):
		if err := s.login(ctx); err != nil {
			return "", err
		}
	case !now.Before(s.renewAt) && s.relogin:
		err := s.login(ctx)
		if err == nil {
			break
		}
		// The token from the old secret id is still good: keep it and say
		// loudly that the new secret id does not log in.
		s.log.ErrorContext(ctx, "service identity: login with the rotated secret id failed; renewing the current token instead", "err", err)
		if err := s.renew(ctx); err != nil {
			return "", err
		}
	case !now.Before(s.renewAt):
		if err := s.renew(ctx); err != nil {
			s.log.WarnContext(ctx, "service token renewal failed; logging in again", "err", err)
			if err := s.login(ctx); err != nil {
				return "", err
			}
		}
	}
	return s.token, nil
}

func (s *Service) renew(ctx context.Context) error {
	cl, err := s.c.withToken(s.token)
	if err != nil {
		return err
	}
	ctx, done, err := s.c.call(ctx, "renew service token")
	if err != nil {
		return err
	}
	defer done()
	sec, err := cl.Auth().Token().RenewSelfWithContext(ctx, 0)
	if err != nil {
		return classify("renew service token", err, ErrPermissionDenied)
	}
	if sec == nil || sec.Auth == nil {
		return errors.New("renew service token: empty response")
	}
	ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
	// At the token's max TTL Vault renews for less than asked: log in anew
	// before the remaining time gets short.
	if ttl < time.Minute {
		return fmt.Errorf("renew service token: only %s left", ttl)
	}
	s.setToken(s.token, ttl)
	return nil
}

// Invalidate forgets the token (Vault said it is no longer valid).
func (s *Service) invalidate(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == token {
		s.token = ""
	}
}

// do runs fn with the service token; when Vault refuses the token (revoked
// behind the portal's back) it logs in once more and retries. Only idempotent
// operations go through do.
func (s *Service) do(ctx context.Context, fn func(*vaultapi.Client) error) error {
	for attempt := 0; ; attempt++ {
		tok, err := s.Token(ctx)
		if err != nil {
			return err
		}
		cl, err := s.c.withToken(tok)
		if err != nil {
			return err
		}
		// fn uses its caller's context; the place among the calls under
		// way is taken here and the HTTP client's timeout (Config.Timeout)
		// bounds the call.
		if err := s.c.acquire(ctx, "service call"); err != nil {
			return err
		}
		err = fn(cl)
		<-s.c.slots
		var re *vaultapi.ResponseError
		if attempt == 0 && errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
			s.log.WarnContext(ctx, "service token refused; logging in again")
			s.invalidate(tok)
			continue
		}
		return err
	}
}

// Run renews the token in the background until ctx ends, so that a quiet
// portal still has a live identity when the next request comes.
func (s *Service) Run(ctx context.Context) {
	for {
		s.mu.Lock()
		wait := s.renewAt.Sub(s.now())
		if s.token == "" {
			wait = 0
		}
		s.mu.Unlock()
		wait = max(wait, 5*time.Second)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if _, err := s.Token(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "service identity unavailable", "err", err)
		}
	}
}

// Revoke revokes serial in mount. Revoking an already revoked or expired
// certificate is not an error.
func (s *Service) Revoke(ctx context.Context, mount, serial string) error {
	err := s.do(ctx, func(cl *vaultapi.Client) error {
		_, err := cl.Logical().WriteWithContext(ctx, strings.Trim(mount, "/")+"/revoke", map[string]any{"serial_number": serial})
		return err
	})
	if err != nil {
		return classify("revoke certificate", err, ErrRefused)
	}
	return nil
}

// list returns the keys of a LIST at path with the portal's identity; op
// names it in errors.
func (s *Service) list(ctx context.Context, path, op string) ([]string, error) {
	var keys []string
	err := s.do(ctx, func(cl *vaultapi.Client) error {
		var err error
		keys, err = listKeys(ctx, cl, path)
		return err
	})
	if err != nil {
		return nil, classify(op, err, ErrRefused)
	}
	return keys, nil
}

// listKeys is LIST path (GET with list=true, as the API client sends it)
// with the answer's data.keys decoded straight into strings, the answer
// read at most maxListAnswer bytes. The API client's ListWithContext first
// copies the whole body into a growing buffer and decodes it into []any:
// for a PKI mount's 100,000 serials (a 6 MB answer) that allocated 76 MB
// per LIST, against 32 MB here (json.Decoder still holds the one JSON
// value in its buffer; a token-by-token decode held less but cost 40%
// more CPU). No keys at all is Vault's 404.
func listKeys(ctx context.Context, cl *vaultapi.Client, path string) ([]string, error) {
	resp, err := cl.Logical().ReadRawWithDataWithContext(ctx, path, map[string][]string{"list": {"true"}})
	if resp != nil {
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return nil, nil
		}
	}
	if err != nil {
		return nil, err
	}
	var answer struct {
		Data struct {
			Keys []string `json:"keys"`
		} `json:"data"`
	}
	body := &io.LimitedReader{R: resp.Body, N: maxListAnswer + 1}
	if err := json.NewDecoder(body).Decode(&answer); err != nil {
		if body.N <= 0 {
			return nil, fmt.Errorf("list answer larger than %d MiB: %w", maxListAnswer>>20, ErrUnavailable)
		}
		return nil, fmt.Errorf("decode list answer: %w", err)
	}
	return answer.Data.Keys, nil
}

// maxListAnswer bounds a LIST answer read into memory: about four million
// PKI serials, forty times the largest mount measured (docs/benchmarks.md),
// so that a Vault, or something posing as it, streaming keys without end
// fails the call instead of exhausting the portal's memory.
var maxListAnswer int64 = 256 << 20

// ListCertificates lists the serials Vault stores for mount.
func (s *Service) ListCertificates(ctx context.Context, mount string) ([]string, error) {
	return s.list(ctx, strings.Trim(mount, "/")+"/certs", "list certificates")
}

// ListUsers lists the users of a userpass mount.
func (s *Service) ListUsers(ctx context.Context, mount string) ([]string, error) {
	return s.list(ctx, "auth/"+strings.Trim(mount, "/")+"/users", "list users")
}

// CRLSerials returns the serials on mount's current CRL (for tests and
// reconciliation).
func (c *Client) CRLSerials(ctx context.Context, mount string) ([]string, error) {
	cl, err := c.withToken("")
	if err != nil {
		return nil, err
	}
	ctx, done, err := c.call(ctx, "read CRL")
	if err != nil {
		return nil, err
	}
	defer done()
	resp, err := cl.Logical().ReadRawWithContext(ctx, strings.Trim(mount, "/")+"/crl")
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return nil, classify("read CRL", err, ErrRefused)
	}
	return parseCRLSerials(resp.Body)
}

// StoredCertificate is a certificate Vault stores, with its revocation.
type StoredCertificate struct {
	*x509.Certificate
	RevokedAt time.Time // zero while Vault has not revoked it
}

// ReadCertificate reads one certificate Vault stores in mount, and when Vault
// revoked it.
func (s *Service) ReadCertificate(ctx context.Context, mount, serial string) (*StoredCertificate, error) {
	var cert *StoredCertificate
	err := s.do(ctx, func(cl *vaultapi.Client) error {
		sec, err := cl.Logical().ReadWithContext(ctx, strings.Trim(mount, "/")+"/cert/"+serial)
		if err != nil || sec == nil {
			return err
		}
		p, _ := sec.Data["certificate"].(string)
		certs, err := parseCerts(p)
		if err != nil || len(certs) == 0 {
			return fmt.Errorf("parse certificate %s: %v", serial, err)
		}
		cert = &StoredCertificate{Certificate: certs[0]}
		// revocation_time is 0 for a live certificate (a json.Number).
		if n, ok := sec.Data["revocation_time"].(json.Number); ok {
			if at, err := n.Int64(); err == nil && at > 0 {
				cert.RevokedAt = time.Unix(at, 0)
			}
		}
		return nil
	})
	if err != nil {
		return nil, classify("read certificate", err, ErrRefused)
	}
	if cert == nil {
		return nil, fmt.Errorf("read certificate %s: %w", serial, ErrNotFound)
	}
	return cert, nil
}

// ListRevokedCertificates lists the serials Vault holds as revoked in mount
// (LIST <mount>/certs/revoked): one call instead of reading every
// certificate's revocation_time. The service policy needs "list" on it.
func (s *Service) ListRevokedCertificates(ctx context.Context, mount string) ([]string, error) {
	return s.list(ctx, strings.Trim(mount, "/")+"/certs/revoked", "list revoked certificates")
}
