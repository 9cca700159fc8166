// Package nginxcerts keeps the files Nginx needs to admit portal certificates — its server certificate and key, the client CA chain and the CRLs of every CA in that chain — current from Vault, writing each file atomically.
package nginxcerts

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// Names of the files Sync writes in Config.Dir; `certportal nginx-config`
// takes them as --server-cert, --server-key, --client-ca and --crl.
const (
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server-key.pem"
	ClientCAFile   = "client-ca.pem"
	CRLFile        = "crl.pem"
)

// Defaults of `certportal setup` that Config refers to.
const (
	DefaultPKIMount  = "pki"
	DefaultRootMount = "pki_root"
	// Server certificates come from a mount of their own, out of reach of
	// the portal's AppRole, which may revoke anything in the issuing mount.
	DefaultServerMount = "pki_server"
	DefaultRole        = "nginx-server"
)

// Config says what to fetch and where to put it.
type Config struct {
	Dir         string   // existing, writable directory
	ServerName  string   // the server certificate's CN and DNS SAN
	IPSANs      []string // optional IP SANs, e.g. 127.0.0.1
	PKIMount    string   // issuing mount of users' certificates: client CA chain, CRL
	RootMount   string   // root mount: the root CA's CRL
	ServerMount string   // mount of the server role and its CA
	Role        string   // the server role setup writes
	TTL         time.Duration
}

var (
	// Plain DNS names only: the server role admits no wildcards, and Nginx and
	// scripts take the name unquoted.
	serverNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
	mountRE      = regexp.MustCompile(`^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$`)
	roleRE       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
)

// Validate reports every problem with c, one per line, before anything
// talks to Vault or touches the directory.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Dir == "" {
		add("out dir is required")
	}
	switch {
	case c.ServerName == "":
		add("server name is required")
	case len(c.ServerName) > 253 || !serverNameRE.MatchString(c.ServerName):
		add("server name %q: must be one DNS name (letters, digits, '.', '-'), without spaces, quotes or wildcards", c.ServerName)
	}
	for _, ip := range c.IPSANs {
		if net.ParseIP(ip) == nil {
			add("IP SAN %q: not an IP address", ip)
		}
	}
	for _, m := range []struct{ what, v string }{{"PKI mount", c.PKIMount}, {"root mount", c.RootMount}, {"server mount", c.ServerMount}} {
		if !mountRE.MatchString(m.v) {
			add("%s %q: want a Vault mount path such as pki", m.what, m.v)
		}
	}
	if !roleRE.MatchString(c.Role) {
		add("role %q: want letters, digits, '-' and '_'", c.Role)
	}
	if c.TTL != 0 && c.TTL < time.Hour {
		// Renewal starts when a third of the life is left; shorter certificates
		// would keep Vault and Nginx busy for nothing.
		add("ttl %s: want 0 (the role's default) or at least 1h", c.TTL)
	}
	return errors.Join(errs...)
}

// CheckDir reports whether dir is an existing directory Sync can write to,
// by creating and removing a file there: permission bits alone do not say
// (root, read-only mounts, ACLs).
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("out dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("out dir %s: not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".nginx-certs-check-*")
	if err != nil {
		return fmt.Errorf("out dir %s: not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("out dir %s: %w", dir, err)
	}
	return nil
}

// File is one file Sync is responsible for.
type File struct {
	Path    string
	Changed bool
}

// Result says what Sync found and wrote.
type Result struct {
	Files []File // server certificate, key, client CA, CRL, in that order
	// Server is the certificate now in the directory; Issued says whether
	// this run got it from Vault, and why.
	Server       *x509.Certificate
	ServerSerial string // set when Issued
	Issued       bool
	IssueReason  string
	// RenewAt is when a third of the server certificate's life is left.
	RenewAt time.Time
	// CRLNextUpdate is the earliest next-update time of the CRLs written;
	// after it Nginx refuses every certificate. CRLRefreshBy is when a third
	// of that CRL's validity is left and Sync rotates it.
	CRLNextUpdate time.Time
	CRLRefreshBy  time.Time
	Rotated       []string // mounts whose CRL Sync asked Vault to rebuild
	Warnings      []string
}

// Changed reports whether any file was written.
func (r *Result) Changed() bool {
	for _, f := range r.Files {
		if f.Changed {
			return true
		}
	}
	return false
}

// Sync brings the files in cfg.Dir up to date with Vault as of now: it
// fetches the client CA chain and the CRLs (rotating any that has less than a
// third of its validity left), keeps the server certificate unless it is
// missing, does not match cfg, is not from the current CA or has less than a
// third of its life left, and then writes only the files whose content
// changed. Everything is fetched and checked before the first file is
// written, so an error leaves the directory as it was.
func Sync(ctx context.Context, c *vaultapi.Client, cfg Config, now time.Time) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := CheckDir(cfg.Dir); err != nil {
		return nil, err
	}
	res := &Result{}
	chain, err := CAChain(ctx, c, cfg.PKIMount)
	if err != nil {
		return nil, err
	}
	crlPEM, err := fetchCRLs(ctx, c, cfg, chain, now, res)
	if err != nil {
		return nil, err
	}

	serverChain := chain
	if cfg.ServerMount != cfg.PKIMount {
		if serverChain, err = CAChain(ctx, c, cfg.ServerMount); err != nil {
			return nil, err
		}
	}
	certPEM, keyPEM, leaf, reason := currentServer(cfg, serverChain, now)
	if reason != "" {
		sc, err := IssueServer(ctx, c, ServerRequest{
			Mount: cfg.ServerMount, Role: cfg.Role, ServerName: cfg.ServerName, IPSANs: cfg.IPSANs, TTL: cfg.TTL,
		})
		if err != nil {
			return nil, err
		}
		certPEM, keyPEM, leaf = sc.CertPEM, sc.KeyPEM, sc.Leaf
		res.Issued, res.IssueReason, res.ServerSerial = true, reason, sc.Serial
		if renewDue(leaf, now) {
			// Only when this machine's clock and Vault's disagree badly; the
			// certificate may still work, but the next run will renew it again.
			res.Warnings = append(res.Warnings, fmt.Sprintf("server certificate %s from Vault is already due for renewal at %s (valid %s to %s): check the clocks here and on Vault",
				sc.Serial, now.UTC().Format(time.RFC3339), leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	res.Server = leaf
	res.RenewAt = renewAt(leaf)

	var caPEM []byte
	for _, ca := range chain {
		caPEM = append(caPEM, pemCert(ca)...)
	}
	files := []staged{
		// The key goes first and the certificate right after it, so the pair
		// on disk is mismatched for as short a time as possible.
		{path: filepath.Join(cfg.Dir, ServerKeyFile), data: keyPEM, mode: 0o600},
		{path: filepath.Join(cfg.Dir, ServerCertFile), data: certPEM, mode: 0o644},
		{path: filepath.Join(cfg.Dir, ClientCAFile), data: caPEM, mode: 0o644},
		{path: filepath.Join(cfg.Dir, CRLFile), data: crlPEM, mode: 0o644},
	}
	changed, err := writeFiles(files)
	if err != nil {
		return nil, err
	}
	// Report in the order nginx-config lists them.
	order := []int{1, 0, 2, 3}
	for _, i := range order {
		res.Files = append(res.Files, File{Path: files[i].path, Changed: changed[i]})
	}
	return res, nil
}

// fetchCRLs returns the PEM CRLs of every CA in chain, in chain order.
func fetchCRLs(ctx context.Context, c *vaultapi.Client, cfg Config, chain []*x509.Certificate, now time.Time, res *Result) ([]byte, error) {
	mounts := []string{cfg.PKIMount}
	if cfg.RootMount != cfg.PKIMount {
		mounts = append(mounts, cfg.RootMount)
	}
	byCA := make([]*x509.RevocationList, len(chain))
	for _, m := range mounts {
		crl, err := CRL(ctx, c, m)
		if err != nil {
			return nil, err
		}
		if refreshDue(crl, now) {
			if err := RotateCRL(ctx, c, m); err != nil {
				if crlExpired(crl, now) {
					return nil, fmt.Errorf("CRL of %s expired at %s and could not be rebuilt: %w", m, crl.NextUpdate.UTC().Format(time.RFC3339), err)
				}
				res.Warnings = append(res.Warnings, fmt.Sprintf("CRL of %s expires at %s and could not be rebuilt (does the token hold the certportal-nginx policy?): %v",
					m, crl.NextUpdate.UTC().Format(time.RFC3339), err))
			} else {
				res.Rotated = append(res.Rotated, m)
				if crl, err = CRL(ctx, c, m); err != nil {
					return nil, err
				}
			}
		}
		if crlExpired(crl, now) {
			return nil, fmt.Errorf("CRL of %s expired at %s: Nginx would refuse every certificate", m, crl.NextUpdate.UTC().Format(time.RFC3339))
		}
		i := slices.IndexFunc(chain, func(ca *x509.Certificate) bool { return crl.CheckSignatureFrom(ca) == nil })
		if i < 0 {
			return nil, fmt.Errorf("CRL of %s (issuer %s) is not from a CA in %s's chain: is the root mount right?", m, crl.Issuer, cfg.PKIMount)
		}
		byCA[i] = crl
	}
	var out []byte
	for i, crl := range byCA {
		if crl == nil {
			// Nginx checks revocation for every CA in the chain and refuses
			// every certificate when one CRL is missing.
			return nil, fmt.Errorf("no CRL for %s in mounts %v: Nginx would refuse every certificate; name its mount with the root mount option", chain[i].Subject, mounts)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})...)
		if !crl.NextUpdate.IsZero() && (res.CRLNextUpdate.IsZero() || crl.NextUpdate.Before(res.CRLNextUpdate)) {
			res.CRLNextUpdate = crl.NextUpdate
			res.CRLRefreshBy = crl.NextUpdate.Add(-crl.NextUpdate.Sub(crl.ThisUpdate) / 3)
		}
	}
	return out, nil
}

func crlExpired(crl *x509.RevocationList, now time.Time) bool {
	return !crl.NextUpdate.IsZero() && !now.Before(crl.NextUpdate)
}

// refreshDue applies the same rule as server certificates: act when a third
// of the validity is left, which with Vault's default 72h expiry leaves a day
// to notice a refresh that keeps failing.
func refreshDue(crl *x509.RevocationList, now time.Time) bool {
	if crl.NextUpdate.IsZero() {
		return false
	}
	return crl.NextUpdate.Sub(now) < crl.NextUpdate.Sub(crl.ThisUpdate)/3
}

func renewAt(c *x509.Certificate) time.Time {
	return c.NotAfter.Add(-c.NotAfter.Sub(c.NotBefore) / 3)
}

func renewDue(c *x509.Certificate, now time.Time) bool {
	return !now.Before(renewAt(c))
}

// currentServer returns the server certificate and key in cfg.Dir if they can
// stay, or a reason to issue new ones.
func currentServer(cfg Config, chain []*x509.Certificate, now time.Time) (certPEM []byte, keyPEM Secret, leaf *x509.Certificate, reason string) {
	certPEM, err1 := os.ReadFile(filepath.Join(cfg.Dir, ServerCertFile))
	keyPEM, err2 := os.ReadFile(filepath.Join(cfg.Dir, ServerKeyFile))
	if errors.Is(err1, os.ErrNotExist) || errors.Is(err2, os.ErrNotExist) {
		return nil, nil, nil, "no server certificate yet"
	}
	if err1 != nil || err2 != nil {
		return nil, nil, nil, "server certificate or key unreadable"
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// Never include err: for a damaged key file it may quote key bytes.
		return nil, nil, nil, "server certificate and key do not form a pair"
	}
	leaf = pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, nil, nil, "server certificate unparsable"
		}
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, ca := range chain {
		if selfSigned(ca) {
			roots.AddCert(ca)
		} else {
			inter.AddCert(ca)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		DNSName: cfg.ServerName, Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return nil, nil, nil, fmt.Sprintf("server certificate not valid for %s under the current CA (%v)", cfg.ServerName, err)
	}
	if !sameIPs(leaf.IPAddresses, cfg.IPSANs) {
		return nil, nil, nil, "server certificate has other IP SANs"
	}
	if !bytes.Equal(certPEM, serverChainPEM(leaf, chain)) {
		// Other CAs in the file than the chain now has (the issuing CA was
		// re-signed, or the file was edited): one new certificate is simpler
		// and safer than patching the file.
		return nil, nil, nil, "server certificate chain differs from the CA's"
	}
	if renewDue(leaf, now) {
		return nil, nil, nil, fmt.Sprintf("less than a third of the server certificate's life left (renew at %s)", renewAt(leaf).UTC().Format(time.RFC3339))
	}
	return certPEM, keyPEM, leaf, ""
}

func sameIPs(have []net.IP, want []string) bool {
	if len(have) != len(want) {
		return false
	}
	for _, w := range want {
		ip := net.ParseIP(w)
		if !slices.ContainsFunc(have, func(h net.IP) bool { return h.Equal(ip) }) {
			return false
		}
	}
	return true
}
