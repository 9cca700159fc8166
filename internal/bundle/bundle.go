// Package bundle builds the password-protected PKCS#12 (.p12) files the portal
// hands to browsers, entirely in memory.
package bundle

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// Encryption names the PKCS#12 profile a user picks.
type Encryption string

const (
	// Modern is PBES2 with AES-256-CBC and a SHA-256 MAC (go-pkcs12's
	// Modern2023): what current browsers, OpenSSL 3 and Windows 10+ read.
	Modern Encryption = "modern"
	// Compat is 3DES with a SHA-1 MAC (LegacyDES). macOS, iOS, Android and
	// Windows Server 2016 and older reject AES files with a misleading
	// "wrong password"; they read this one. LegacyRC2 is never offered:
	// OpenSSL 3 cannot read it without -legacy.
	Compat Encryption = "compat"
)

// ParseEncryption accepts "modern" (the default when s is empty) or "compat".
func ParseEncryption(s string) (Encryption, error) {
	switch Encryption(s) {
	case "", Modern:
		return Modern, nil
	case Compat:
		return Compat, nil
	}
	return "", fmt.Errorf("unknown encryption %q (want modern or compat)", s)
}

func (e Encryption) encoder() *pkcs12.Encoder {
	if e == Compat {
		return pkcs12.LegacyDES
	}
	return pkcs12.Modern2023
}

// MinPasswordLen is the shortest .p12 password accepted. The file leaves the
// portal's control the moment it is downloaded, so its password is the only
// thing between a copied file and the key.
const MinPasswordLen = 12

// Encode returns a .p12 holding key, cert and the CA chain, encrypted with
// password. An empty or short password is refused: an unprotected key file is
// never produced.
func Encode(key crypto.Signer, cert *x509.Certificate, chain []*x509.Certificate, password string, enc Encryption) ([]byte, error) {
	if len([]rune(password)) < MinPasswordLen {
		return nil, errors.New("bundle: password too short")
	}
	if key == nil || cert == nil {
		return nil, errors.New("bundle: missing key or certificate")
	}
	pfx, err := enc.encoder().Encode(key, cert, chain, password)
	if err != nil {
		return nil, fmt.Errorf("bundle: encode: %w", err)
	}
	return pfx, nil
}
