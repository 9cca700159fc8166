package bundle

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/testenv/p12tools"
)

// The PKCS#12 structures (RFC 7292) as far as the iteration counts; the rest
// stays raw.
type pfxPDU struct {
	Version  int
	AuthSafe contentInfo
	MacData  macData `asn1:"optional"`
}

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
}

type macData struct {
	Mac struct {
		Algorithm pkix.AlgorithmIdentifier
		Digest    []byte
	}
	MacSalt []byte
	// DER leaves a count of 1 out: the default is exactly the weak case.
	Iterations int `asn1:"optional,default:1"`
}

type encryptedData struct {
	Version              int
	EncryptedContentInfo struct {
		ContentType                asn1.ObjectIdentifier
		ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
		EncryptedContent           asn1.RawValue `asn1:"tag:0,optional"`
	}
}

type safeBag struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue   `asn1:"tag:0,explicit"`
	Attributes []asn1.RawValue `asn1:"set,optional"`
}

type encryptedPrivateKeyInfo struct {
	Algorithm     pkix.AlgorithmIdentifier
	EncryptedData []byte
}

var (
	oidData              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEncryptedData     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	oidShroudedKeyBag    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidPBES2             = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBEWithSHA3DESCBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 3}
)

// kdfIterations reads the iteration count of a password-based encryption
// algorithm: PKCS#12's pbeWithSHAAnd3-KeyTripleDES-CBC (pbeParams) or PBES2
// with PBKDF2.
func kdfIterations(alg pkix.AlgorithmIdentifier) (int, error) {
	switch {
	case alg.Algorithm.Equal(oidPBEWithSHA3DESCBC):
		var p struct {
			Salt       []byte
			Iterations int
		}
		if _, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p); err != nil {
			return 0, fmt.Errorf("pbeParams: %w", err)
		}
		return p.Iterations, nil
	case alg.Algorithm.Equal(oidPBES2):
		var p struct {
			KDF struct {
				Algorithm asn1.ObjectIdentifier
				Params    struct {
					Salt       []byte
					Iterations int
					Rest       asn1.RawValue `asn1:"optional"`
				}
			}
			Scheme pkix.AlgorithmIdentifier
		}
		if _, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p); err != nil {
			return 0, fmt.Errorf("PBES2-params: %w", err)
		}
		return p.KDF.Params.Iterations, nil
	}
	return 0, fmt.Errorf("unexpected algorithm %v", alg.Algorithm)
}

// p12Iterations returns the MAC's iteration count and the KDF iteration
// counts of the certificate encryption and of every shrouded key bag.
func p12Iterations(der []byte) (mac int, certs []int, keys []int, err error) {
	var pfx pfxPDU
	if rest, err := asn1.Unmarshal(der, &pfx); err != nil || len(rest) > 0 {
		return 0, nil, nil, fmt.Errorf("PFX: %v (%d bytes left)", err, len(rest))
	}
	if pfx.MacData.Mac.Digest == nil {
		return 0, nil, nil, fmt.Errorf("PFX has no MacData")
	}
	var authSafeData []byte
	if _, err := asn1.Unmarshal(pfx.AuthSafe.Content.Bytes, &authSafeData); err != nil {
		return 0, nil, nil, fmt.Errorf("authSafe: %w", err)
	}
	var safe []contentInfo
	if _, err := asn1.Unmarshal(authSafeData, &safe); err != nil {
		return 0, nil, nil, fmt.Errorf("AuthenticatedSafe: %w", err)
	}
	for _, ci := range safe {
		switch {
		case ci.ContentType.Equal(oidEncryptedData):
			var ed encryptedData
			if _, err := asn1.Unmarshal(ci.Content.Bytes, &ed); err != nil {
				return 0, nil, nil, fmt.Errorf("EncryptedData: %w", err)
			}
			n, err := kdfIterations(ed.EncryptedContentInfo.ContentEncryptionAlgorithm)
			if err != nil {
				return 0, nil, nil, err
			}
			certs = append(certs, n)
		case ci.ContentType.Equal(oidData):
			var data []byte
			if _, err := asn1.Unmarshal(ci.Content.Bytes, &data); err != nil {
				return 0, nil, nil, fmt.Errorf("data: %w", err)
			}
			var bags []safeBag
			if _, err := asn1.Unmarshal(data, &bags); err != nil {
				return 0, nil, nil, fmt.Errorf("SafeContents: %w", err)
			}
			for _, b := range bags {
				if !b.ID.Equal(oidShroudedKeyBag) {
					continue
				}
				var epki encryptedPrivateKeyInfo
				if _, err := asn1.Unmarshal(b.Value.Bytes, &epki); err != nil {
					return 0, nil, nil, fmt.Errorf("EncryptedPrivateKeyInfo: %w", err)
				}
				n, err := kdfIterations(epki.Algorithm)
				if err != nil {
					return 0, nil, nil, err
				}
				keys = append(keys, n)
			}
		}
	}
	return pfx.MacData.Iterations, certs, keys, nil
}

// TestIterations: both profiles protect the MAC and both encryptions with at
// least 2048 iterations, read from the file itself. (LegacyDES's default MAC
// count is 1: the password of a compat file could be tried at SHA-1 speed.)
func TestIterations(t *testing.T) {
	caKey, ca := mustCA(t)
	key, leaf := mustLeaf(t, caKey, ca)
	for _, enc := range []Encryption{Modern, Compat} {
		t.Run(string(enc), func(t *testing.T) {
			pfx, err := Encode(key, leaf, []*x509.Certificate{ca}, "correct horse battery", enc)
			if err != nil {
				t.Fatal(err)
			}
			mac, certs, keys, err := p12Iterations(pfx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("MAC %d iterations, certificates %v, keys %v", mac, certs, keys)
			if mac < 2048 {
				t.Errorf("MAC uses %d iterations, want >= 2048", mac)
			}
			if len(certs) != 1 || len(keys) != 1 {
				t.Fatalf("want one encrypted certificate safe and one shrouded key, got %v and %v", certs, keys)
			}
			if certs[0] < 2048 || keys[0] < 2048 {
				t.Errorf("encryption KDF uses %d (certificates) and %d (key) iterations, want >= 2048", certs[0], keys[0])
			}
		})
	}
}

// TestToolsOpen: OpenSSL 3 (without -legacy), NSS, Java's keytool and
// Python's cryptography each open both profiles with the right password,
// see the certificate, and refuse a wrong password.
func TestToolsOpen(t *testing.T) {
	caKey, ca := mustCA(t)
	key, leaf := mustLeaf(t, caKey, ca)
	const pw = "correct horse battery"
	for _, tl := range p12tools.Tools {
		bin := tl.Path(t)
		for _, enc := range []Encryption{Modern, Compat} {
			t.Run(tl.Name+"/"+string(enc), func(t *testing.T) {
				pfx, err := Encode(key, leaf, []*x509.Certificate{ca}, pw, enc)
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(t.TempDir(), "alice.p12")
				if err := os.WriteFile(path, pfx, 0o600); err != nil {
					t.Fatal(err)
				}
				out, err := tl.Run(t, bin, path, pw)
				if err != nil {
					t.Fatalf("does not open with the right password: %v\n%s", err, out)
				}
				if tl.Name != "openssl" && !strings.Contains(string(out), "alice@example.com") {
					t.Fatalf("output lacks the certificate's subject:\n%s", out)
				}
				if out, err := tl.Run(t, bin, path, "wrong horse battery"); err == nil {
					t.Fatalf("opened with a wrong password:\n%s", out)
				}
			})
		}
	}
}

// BenchmarkEncode: the CPU one .p12 costs, per profile.
func BenchmarkEncode(b *testing.B) {
	caKey, ca := mustCA(b)
	key, leaf := mustLeaf(b, caKey, ca)
	for _, enc := range []Encryption{Modern, Compat} {
		b.Run(string(enc), func(b *testing.B) {
			for b.Loop() {
				if _, err := Encode(key, leaf, []*x509.Certificate{ca}, "correct horse battery", enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
