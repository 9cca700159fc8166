package nginxconf_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// testCA is a throwaway certificate authority shaped like Vault's: a root signing an
// intermediate that issues the leaves.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// testPKI holds the files a rendered configuration points at.
type testPKI struct {
	root, issuing *testCA
	serverCert    string // server certificate, PEM
	serverKey     string
	clientCA      string // issuing chain: intermediate then root
	crl           string // CRLs of the intermediate and of the root
	serverPool    *x509.CertPool
	dir           string
	revoked       []*x509.Certificate
}

var lastSerial atomic.Int64

// newSerial returns serials whose big-endian bytes start above 0x0f, so nginx's
// $ssl_client_serial (hex of the DER bytes) equals %X of the number.
func newSerial() *big.Int {
	return big.NewInt(0x1234567890ab00 + lastSerial.Add(1))
}

func mustKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func mustSign(tb testing.TB, tmpl *x509.Certificate, parent *testCA, key *ecdsa.PrivateKey) *x509.Certificate {
	tb.Helper()
	parentCert, parentKey := tmpl, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// mustCA creates a CA; parent nil makes a self-signed root.
func mustCA(tb testing.TB, name string, parent *testCA) *testCA {
	tb.Helper()
	key := mustKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return &testCA{cert: mustSign(tb, tmpl, parent, key), key: key}
}

// mustClient issues a client certificate for cn from ca.
func mustClient(tb testing.TB, ca *testCA, cn string) (tls.Certificate, *x509.Certificate) {
	tb.Helper()
	return mustClientUntil(tb, ca, cn, time.Now().Add(12*time.Hour))
}

// mustClientUntil issues a client certificate valid until notAfter.
func mustClientUntil(tb testing.TB, ca *testCA, cn string, notAfter time.Time) (tls.Certificate, *x509.Certificate) {
	tb.Helper()
	key := mustKey(tb)
	cert := mustSign(tb, &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notAfter.Add(-24 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, key)
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, cert
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func mustWrite(tb testing.TB, path string, data ...[]byte) {
	tb.Helper()
	var all []byte
	for _, d := range data {
		all = append(all, d...)
	}
	if err := os.WriteFile(path, all, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// mustPKI writes a server certificate, the client CA chain and an empty CRL set to a
// fresh directory.
func mustPKI(tb testing.TB) *testPKI {
	tb.Helper()
	dir := tb.TempDir()
	p := &testPKI{dir: dir}
	p.root = mustCA(tb, "certportal test root", nil)
	p.issuing = mustCA(tb, "certportal test issuing", p.root)

	serverCA := mustCA(tb, "test server CA", nil)
	serverKey := mustKey(tb)
	server := mustSign(tb, &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: "app.test"},
		DNSNames:     []string{"app.test", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, serverCA, serverKey)
	p.serverPool = x509.NewCertPool()
	p.serverPool.AddCert(serverCA.cert)
	keyDER, err := x509.MarshalPKCS8PrivateKey(serverKey)
	if err != nil {
		tb.Fatal(err)
	}

	p.serverCert = filepath.Join(dir, "server.pem")
	p.serverKey = filepath.Join(dir, "server-key.pem")
	p.clientCA = filepath.Join(dir, "client-ca.pem")
	p.crl = filepath.Join(dir, "crl.pem")
	mustWrite(tb, p.serverCert, pemBlock("CERTIFICATE", server.Raw))
	mustWrite(tb, p.serverKey, pemBlock("PRIVATE KEY", keyDER))
	mustWrite(tb, p.clientCA, pemBlock("CERTIFICATE", p.issuing.cert.Raw), pemBlock("CERTIFICATE", p.root.cert.Raw))
	p.writeCRL(tb)
	return p
}

// revoke adds c to the issuing CA's CRL and rewrites the CRL file.
func (p *testPKI) revoke(tb testing.TB, c *x509.Certificate) {
	tb.Helper()
	p.revoked = append(p.revoked, c)
	p.writeCRL(tb)
}

// writeCRL writes a CRL for both CAs: nginx checks revocation along the whole chain and
// refuses a certificate whose chain lacks a CRL.
func (p *testPKI) writeCRL(tb testing.TB) {
	tb.Helper()
	var entries []x509.RevocationListEntry
	for _, c := range p.revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now()})
	}
	issuingCRL := mustCRL(tb, p.issuing, entries)
	rootCRL := mustCRL(tb, p.root, nil)
	mustWrite(tb, p.crl, pemBlock("X509 CRL", issuingCRL), pemBlock("X509 CRL", rootCRL))
}

func mustCRL(tb testing.TB, ca *testCA, entries []x509.RevocationListEntry) []byte {
	tb.Helper()
	return mustCRLUntil(tb, ca, entries, time.Now().Add(time.Hour))
}

// mustCRLUntil makes a CRL whose next update is nextUpdate; a past time makes it expired.
func mustCRLUntil(tb testing.TB, ca *testCA, entries []x509.RevocationListEntry, nextUpdate time.Time) []byte {
	tb.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    newSerial(),
		ThisUpdate:                nextUpdate.Add(-2 * time.Hour),
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}
