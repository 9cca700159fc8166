// Package devicekey is what the browser runs, compiled to WebAssembly
// (cmd/devicekey): it makes the user's key pair, the CSR the portal signs,
// and the .p12 with the same encoder the server uses (internal/bundle). It
// imports nothing that talks to a server: the key and the file password
// stay in the page's memory.
package devicekey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/certportal/certportal/internal/bundle"
)

// Key is a key pair made on the device. In js/wasm, crypto/rand reads
// crypto.getRandomValues.
type Key struct {
	priv *ecdsa.PrivateKey
}

// New makes an EC P-256 key: what the portal's role allows by default and
// every browser and operating system imports.
func New() (*Key, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devicekey: generate: %w", err)
	}
	return &Key{priv: k}, nil
}

// CSR returns a PEM certificate request for the key. commonName may be
// empty: the certificate's name comes from the user's login, never from
// the request; when given it must be the user's own address.
func (k *Key) CSR(commonName string) (string, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: commonName},
	}, k.priv)
	if err != nil {
		return "", fmt.Errorf("devicekey: csr: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// Errors P12 returns, for the page to show in the user's language.
var (
	ErrPassword    = errors.New("devicekey: password not usable for a .p12")
	ErrCertificate = errors.New("devicekey: certificate not for this key")
)

// P12 packs the key with the certificate and chain (PEM, as the portal's
// /certificates/csr answers) into a .p12 protected by password, with enc
// ("modern" or "compat") exactly as the server path does.
func (k *Key) P12(certPEM, chainPEM, password, enc string) ([]byte, error) {
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	e, err := bundle.ParseEncryption(enc)
	if err != nil {
		return nil, err
	}
	certs, err := bundle.ParseCertificates([]byte(certPEM))
	if err != nil || len(certs) != 1 {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	if !k.priv.PublicKey.Equal(certs[0].PublicKey) {
		return nil, ErrCertificate
	}
	chain, err := bundle.ParseCertificates([]byte(chainPEM))
	if err != nil {
		return nil, fmt.Errorf("devicekey: chain: %w", err)
	}
	return bundle.Encode(k.priv, certs[0], chain, password, e)
}

// checkPassword is the server's rule for a .p12 password
// (portal.CheckPassword): long enough, valid UTF-8, no NUL, only
// characters PKCS#12's BMPString can carry.
func checkPassword(p string) error {
	if utf8.RuneCountInString(p) < bundle.MinPasswordLen || len(p) > 1024 || !utf8.ValidString(p) {
		return ErrPassword
	}
	for _, r := range p {
		if r == 0 || r > 0xFFFF {
			return ErrPassword
		}
	}
	return nil
}
