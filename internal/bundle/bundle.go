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
	// Compat is 3DES with a SHA-1 MAC (LegacyDES, with the MAC's iteration
	// count raised from 1 to Iterations). macOS, iOS, Android and
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

// Iterations is the KDF iteration count of both profiles, for the MAC key
// and for the key and certificate encryption keys alike: OpenSSL 3's default
// (-iter, -maciter). LegacyDES on its own derives its SHA-1 MAC key with ONE
// iteration, and the MAC is what a password guess is checked against: a
// copied compat file could be attacked at raw SHA-1 speed. 2048 makes each
// guess cost 2048 times that; the real protection is still the password's
// length (MinPasswordLen). Every reader the portal supports (OpenSSL 3,
// NSS, Java, Python, Windows, macOS) reads either count.
const Iterations = 2048

// The encoders, built once: WithIterations sets the MAC and the encryption
// counts together. Modern2023's counts already are 2048; pinning them keeps a
// library upgrade from changing what the portal writes.
var (
	modernEncoder = pkcs12.Modern2023.WithIterations(Iterations)
	compatEncoder = pkcs12.LegacyDES.WithIterations(Iterations)
)

func (e Encryption) encoder() *pkcs12.Encoder {
	if e == Compat {
		return compatEncoder
	}
	return modernEncoder
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
