package nginxcerts

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/vault"

	vaultapi "github.com/hashicorp/vault/api"
)

// The functions in this file are the package's Vault adapter: each is one
// Vault call, taking the client (and so the token) it acts with.

// CAChain reads <mount>/cert/ca_chain: the mount's default issuer first, then
// each CA above it up to the root — exactly the CAs whose certificates Nginx
// must admit.
func CAChain(ctx context.Context, c *vaultapi.Client, mount string) ([]*x509.Certificate, error) {
	s, err := c.Logical().ReadWithContext(ctx, mount+"/cert/ca_chain")
	if err != nil {
		return nil, fmt.Errorf("read %s/cert/ca_chain: %w", mount, err)
	}
	if s == nil || s.Data == nil {
		return nil, fmt.Errorf("read %s/cert/ca_chain: no such mount or no issuer", mount)
	}
	p, _ := s.Data["certificate"].(string)
	certs, err := parseCerts([]byte(p))
	if err != nil {
		return nil, fmt.Errorf("read %s/cert/ca_chain: %w", mount, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("read %s/cert/ca_chain: empty chain", mount)
	}
	for _, ca := range certs {
		if !ca.IsCA {
			return nil, fmt.Errorf("read %s/cert/ca_chain: %s is not a CA", mount, ca.Subject)
		}
	}
	return certs, nil
}

// CRL reads the CRL of <mount>'s default issuer.
func CRL(ctx context.Context, c *vaultapi.Client, mount string) (*x509.RevocationList, error) {
	resp, err := c.Logical().ReadRawWithContext(ctx, mount+"/crl/pem")
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("read %s/crl/pem: %w", mount, err)
	}
	// A CRL is small; the limit only keeps a misbehaving proxy from filling memory.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s/crl/pem: %w", mount, err)
	}
	b, _ := pem.Decode(body)
	if b == nil || b.Type != "X509 CRL" {
		return nil, fmt.Errorf("read %s/crl/pem: no PEM CRL in response", mount)
	}
	crl, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read %s/crl/pem: %w", mount, err)
	}
	return crl, nil
}

// RotateCRL makes Vault rebuild <mount>'s CRL now, with a fresh next-update
// time. Vault does not do that for an unchanged CRL unless auto_rebuild is on.
func RotateCRL(ctx context.Context, c *vaultapi.Client, mount string) error {
	if _, err := c.Logical().ReadWithContext(ctx, mount+"/crl/rotate"); err != nil {
		return fmt.Errorf("rotate %s CRL: %w", mount, err)
	}
	return nil
}

// ServerRequest asks the server role for a certificate.
type ServerRequest struct {
	Mount      string
	Role       string
	ServerName string
	IPSANs     []string
	TTL        time.Duration // 0: the role's default
}

// ServerCert is a server certificate with its key, ready for Nginx.
type ServerCert struct {
	Leaf *x509.Certificate
	// CertPEM is the leaf followed by the intermediate CAs, which Nginx sends
	// to clients; the root is left out, as clients must already hold it.
	CertPEM []byte
	KeyPEM  Secret
	Serial  string // Vault's colon-separated hex form
}

// Secret is key material. It prints as a placeholder, so a stray %v or a
// structured log line cannot leak it.
type Secret []byte

func (Secret) String() string       { return "[redacted]" }
func (Secret) GoString() string     { return "[redacted]" }
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// IssueServer issues a server certificate from <mount>/issue/<role>. Like
// every issue call it is made once: a retry could mint a second certificate.
func IssueServer(ctx context.Context, c *vaultapi.Client, req ServerRequest) (*ServerCert, error) {
	data := map[string]any{
		"common_name":          req.ServerName,
		"format":               "pem",
		"private_key_format":   "pkcs8",
		"exclude_cn_from_sans": false,
	}
	if len(req.IPSANs) > 0 {
		data["ip_sans"] = strings.Join(req.IPSANs, ",")
	}
	if req.TTL > 0 {
		data["ttl"] = fmt.Sprintf("%ds", int64(req.TTL/time.Second))
	}
	path := req.Mount + "/issue/" + url.PathEscape(req.Role)
	s, err := c.Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		return nil, fmt.Errorf("issue server certificate from %s: %w", path, err)
	}
	if s == nil || s.Data == nil {
		return nil, fmt.Errorf("issue server certificate from %s: empty response", path)
	}
	str := func(k string) string { v, _ := s.Data[k].(string); return strings.TrimSpace(v) }
	leafs, err := parseCerts([]byte(str("certificate")))
	if err != nil || len(leafs) == 0 {
		return nil, fmt.Errorf("issue server certificate: bad certificate in response: %v", err)
	}
	var chain []*x509.Certificate
	if raw, ok := s.Data["ca_chain"].([]any); ok {
		for _, r := range raw {
			p, _ := r.(string)
			cs, err := parseCerts([]byte(p))
			if err != nil {
				return nil, fmt.Errorf("issue server certificate: bad ca_chain: %w", err)
			}
			chain = append(chain, cs...)
		}
	}
	key := Secret(str("private_key") + "\n")
	certPEM := serverChainPEM(leafs[0], chain)
	// Catches a response whose key does not belong to the certificate before
	// it reaches Nginx, which would refuse to start with it.
	if _, err := tls.X509KeyPair(certPEM, key); err != nil {
		return nil, errors.New("issue server certificate: key in response does not match the certificate")
	}
	return &ServerCert{Leaf: leafs[0], CertPEM: certPEM, KeyPEM: key, Serial: str("serial_number")}, nil
}

// serverChainPEM is leaf plus every non-self-signed CA of chain.
func serverChainPEM(leaf *x509.Certificate, chain []*x509.Certificate) []byte {
	out := pemCert(leaf)
	for _, ca := range chain {
		if selfSigned(ca) {
			continue
		}
		out = append(out, pemCert(ca)...)
	}
	return out
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// parseCerts is the Vault adapter's PEM bundle parser.
var parseCerts = vault.ParseCertificates

// Token is what RenewToken found out about the client's token.
type Token struct {
	Expires   time.Time // zero: never (a root token)
	Renewable bool
	Renewed   bool
}

// RenewToken renews c's token when it is renewable and less than half of its
// period (or of the TTL it was created with) is left, so a long-running watch
// with a periodic token keeps working. A token that cannot be renewed is
// reported with its expiry, which the caller should warn about.
func RenewToken(ctx context.Context, c *vaultapi.Client) (Token, error) {
	s, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return Token{}, fmt.Errorf("look up token: %w", err)
	}
	ttl, err := s.TokenTTL()
	if err != nil {
		return Token{}, fmt.Errorf("look up token: %w", err)
	}
	if ttl == 0 {
		return Token{}, nil
	}
	now := time.Now()
	renewable, _ := s.TokenIsRenewable()
	full := seconds(s.Data["period"])
	if full == 0 {
		full = seconds(s.Data["creation_ttl"])
	}
	tok := Token{Expires: now.Add(ttl), Renewable: renewable}
	if !renewable || ttl > full/2 {
		return tok, nil
	}
	r, err := c.Auth().Token().RenewSelfWithContext(ctx, 0)
	if err != nil {
		return tok, fmt.Errorf("renew token: %w", err)
	}
	if r == nil || r.Auth == nil {
		return tok, errors.New("renew token: empty response")
	}
	tok.Expires, tok.Renewed = now.Add(time.Duration(r.Auth.LeaseDuration)*time.Second), true
	return tok, nil
}

// seconds reads a duration Vault returns as a JSON number of seconds.
func seconds(v any) time.Duration {
	var n int64
	switch x := v.(type) {
	case json.Number:
		n, _ = x.Int64()
	case float64:
		n = int64(x)
	case int64:
		n = x
	case int:
		n = int64(x)
	}
	return time.Duration(n) * time.Second
}
