package vault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

func selfSignedPEM(t *testing.T, cn string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestChainCache: the same chain is parsed once; a rotated chain is parsed
// anew (never the old one served for it); garbage is an error, not cached;
// the cache stays bounded.
func TestChainCache(t *testing.T) {
	var cc chainCache
	a, b := selfSignedPEM(t, "issuing A")+selfSignedPEM(t, "root"), selfSignedPEM(t, "issuing B")
	first, err := cc.parse(a)
	if err != nil || len(first) != 2 || first[0].Subject.CommonName != "issuing A" {
		t.Fatalf("parse a: %v, %d certs", err, len(first))
	}
	again, _ := cc.parse(a)
	if &again[0] != &first[0] {
		t.Error("the same chain was parsed twice")
	}
	rotated, err := cc.parse(b)
	if err != nil || len(rotated) != 1 || rotated[0].Subject.CommonName != "issuing B" {
		t.Fatalf("rotated chain: %v, %v", err, rotated)
	}
	bad := "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
	if _, err := cc.parse(bad); err == nil {
		t.Fatal("a bad certificate parsed")
	}
	if _, ok := cc.chains[bad]; ok {
		t.Error("a bad chain was cached")
	}
	for i := 0; i < 3*maxCachedChains; i++ {
		if _, err := cc.parse(strings.Repeat("\n", i) + a); err != nil {
			t.Fatal(err)
		}
	}
	if len(cc.chains) > maxCachedChains {
		t.Errorf("cache holds %d chains; bound is %d", len(cc.chains), maxCachedChains)
	}
}
