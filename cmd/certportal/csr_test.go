package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv"
)

// csrPEM makes a CSR for key with the given template, in PEM.
func csrPEM(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func mustECKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustExt(t *testing.T, id asn1.ObjectIdentifier, v any) pkix.Extension {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: id, Value: b}
}

// csrForm is the device-key form the page script posts.
func csrForm(csr, ttl, label string) url.Values {
	return url.Values{"csr": {csr}, "ttl": {ttl}, "label": {label}}
}

type csrAnswer struct {
	Certificate, CAChain, Serial, Error, Code string
}

func decodeCSRAnswer(t *testing.T, r *response) csrAnswer {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("status %d, Content-Type %q, want JSON:\n%s", r.StatusCode, ct, r.Body)
	}
	var a struct {
		Certificate string `json:"certificate"`
		CAChain     string `json:"ca_chain"`
		Serial      string `json:"serial"`
		Error       string `json:"error"`
		Code        string `json:"code"`
	}
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("JSON: %v\n%s", err, r.Body)
	}
	return csrAnswer{a.Certificate, a.CAChain, a.Serial, a.Error, a.Code}
}

// recorded is what the portal's database holds: certificates and the
// issuance events of the trail.
func recorded(t *testing.T, db string) (certs []*store.Certificate, issues int) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	certs, err = st.ListCertificates(ctx, store.CertificateFilter{})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := st.QueryAudit(ctx, store.AuditFilter{Action: "certificate.issue", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return certs, len(evs)
}

// TestDeviceKeyCSR: a CSR made on the device (here with Go's crypto, as the
// WebAssembly module does) comes back as a certificate naming the user,
// signed by Vault with the user's own token, with the key the CSR holds; it
// is in the inventory with the encryption the page chose and as made on
// the device, and in the trail with the public key's
// fingerprint. Each CSR the portal would not honour as asked is refused with
// its own message and leaves Vault, the inventory and the trail as they were.
func TestDeviceKeyCSR(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alicePW := v.Password(t, "alice")
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", alicePW)

	key := mustECKey(t, elliptic.P256())
	form := csrForm(csrPEM(t, key, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "alice@example.com"}}), "720h0m0s", "work laptop")
	form.Set("encryption", "compat") // what the page packs the file with
	r := alice.post("/certificates/csr", form)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("CSR: %d\n%s", r.StatusCode, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	a := decodeCSRAnswer(t, r)
	blk, _ := pem.Decode([]byte(a.Certificate))
	if blk == nil {
		t.Fatalf("no certificate PEM: %+v", a)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Error("certificate does not carry the CSR's key")
	}
	if cert.Subject.CommonName != "alice@example.com" || len(cert.EmailAddresses) != 1 || cert.EmailAddresses[0] != "alice@example.com" {
		t.Errorf("identity: CN %q emails %v", cert.Subject.CommonName, cert.EmailAddresses)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ext key usage %v", cert.ExtKeyUsage)
	}
	if n := strings.Count(a.CAChain, "BEGIN CERTIFICATE"); n != 2 {
		t.Errorf("ca_chain holds %d certificates, want issuing CA and root", n)
	}
	if !certSet(t, v)[a.Serial] {
		t.Errorf("serial %q not in Vault", a.Serial)
	}
	// A CSR without any name gets the user's too: the name comes from the
	// identity, never from the CSR.
	r = alice.post("/certificates/csr", csrForm(csrPEM(t, mustECKey(t, elliptic.P256()), &x509.CertificateRequest{}), "", ""))
	if r.StatusCode != http.StatusOK {
		t.Fatalf("CSR without subject: %d\n%s", r.StatusCode, r.Body)
	}

	certs, issues := recorded(t, p.DB)
	var row *store.Certificate
	for _, c := range certs {
		if c.Serial == a.Serial {
			row = c
		}
	}
	if row == nil || row.Encryption != "compat" || row.KeyOrigin != "device" || row.Label != "work laptop" || row.KeyType != "ec-256" || row.Username != "alice" {
		t.Fatalf("inventory row %+v", row)
	}
	st, err := sqlite.Open(context.Background(), p.DB)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := st.QueryAudit(context.Background(), store.AuditFilter{Serial: a.Serial, Limit: 10})
	st.Close()
	if err != nil || len(evs) != 1 {
		t.Fatalf("events for %s: %d, %v", a.Serial, len(evs), err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(key.Public())
	sum := sha256.Sum256(spki)
	var d map[string]string
	if err := json.Unmarshal([]byte(evs[0].Details), &d); err != nil {
		t.Fatal(err)
	}
	if d["key_origin"] != "device" || d["public_key_sha256"] != hex.EncodeToString(sum[:]) || d["encryption"] != "compat" {
		t.Errorf("event details %v", d)
	}

	// Refused: each with its message, nothing issued or recorded. The cap
	// (3) has room for one more, so a refusal is not the cap's.
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	badSig := []byte(csrPEM(t, mustECKey(t, elliptic.P256()), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice@example.com"}}))
	if blk, _ := pem.Decode(badSig); blk != nil {
		blk.Bytes[len(blk.Bytes)-3] ^= 0x55 // inside the signature
		badSig = pem.EncodeToMemory(blk)
	}
	oidEKU := asn1.ObjectIdentifier{2, 5, 29, 37}
	serverAuth := asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	clientAuth := asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	type bc struct {
		IsCA bool `asn1:"optional"`
	}
	p256 := func() crypto.Signer { return mustECKey(t, elliptic.P256()) }
	// alice's own address and a Windows UPN (otherName) for an admin: Go
	// parses the first and silently drops the second.
	upn, err := asn1.Marshal(struct {
		ID    asn1.ObjectIdentifier
		Value string `asn1:"utf8,explicit,tag:0"`
	}{asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}, "administrator@corp.example"})
	if err != nil {
		t.Fatal(err)
	}
	email, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, Bytes: []byte("alice@example.com")})
	otherName, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: upn[2:]})
	sans, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: append(email, otherName...)})
	good := csrPEM(t, p256(), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice@example.com"}})
	for _, tc := range []struct {
		name   string
		csr    string
		status int
		code   string
		enc    string // the form's encryption, when not the default
	}{
		{"for bob", csrPEM(t, p256(), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "bob@example.com"}}), 403, "error.csr_other_identity", ""},
		{"RSA key", csrPEM(t, rsaKey, &x509.CertificateRequest{}), 400, "error.csr_key_type", ""},
		{"ed25519 key", csrPEM(t, edKey, &x509.CertificateRequest{}), 400, "error.csr_key_type", ""},
		{"P-384 key", csrPEM(t, mustECKey(t, elliptic.P384()), &x509.CertificateRequest{}), 400, "error.csr_key_type", ""},
		{"bad signature", string(badSig), 400, "error.csr_signature", ""},
		{"server auth", csrPEM(t, p256(), &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{
			mustExt(t, oidEKU, []asn1.ObjectIdentifier{clientAuth, serverAuth})}}), 400, "error.csr_usage", ""},
		{"DNS SAN", csrPEM(t, p256(), &x509.CertificateRequest{DNSNames: []string{"portal.example.com"}}), 400, "error.csr_sans", ""},
		{"bob as SAN", csrPEM(t, p256(), &x509.CertificateRequest{EmailAddresses: []string{"alice@example.com", "bob@example.com"}}), 400, "error.csr_sans", ""},
		{"CA", csrPEM(t, p256(), &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{
			mustExt(t, asn1.ObjectIdentifier{2, 5, 29, 19}, bc{IsCA: true})}}), 400, "error.csr_extension", ""},
		{"organization", csrPEM(t, p256(), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice@example.com", Organization: []string{"Evil"}}}), 400, "error.csr_subject", ""},
		{"not a CSR", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", 400, "error.csr_invalid", ""},
		{"empty", "", 400, "error.csr_invalid", ""},
		{"encryption not offered", csrPEM(t, p256(), &x509.CertificateRequest{}), 400, "error.encryption_invalid", "rc2"},
		{"encryption 'device'", csrPEM(t, p256(), &x509.CertificateRequest{}), 400, "error.encryption_invalid", "device"},
		{"email and an otherName SAN", csrPEM(t, p256(), &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: sans}}}), 400, "error.csr_sans", ""},
		{"text before the PEM", "Subject: alice\n" + good, 400, "error.csr_invalid", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := certSet(t, v)
			form := csrForm(tc.csr, "720h0m0s", "")
			if tc.enc != "" {
				form.Set("encryption", tc.enc)
			}
			r := alice.post("/certificates/csr", form)
			a := decodeCSRAnswer(t, r)
			if r.StatusCode != tc.status || a.Code != tc.code || a.Error == "" || a.Certificate != "" {
				t.Fatalf("status %d code %q error %q, want %d %s", r.StatusCode, a.Code, a.Error, tc.status, tc.code)
			}
			if len(certSet(t, v)) != len(before) {
				t.Fatal("Vault signed a refused CSR")
			}
			if c, n := recorded(t, p.DB); len(c) != len(certs) || n != issues {
				t.Fatalf("refused CSR recorded: %d certificates, %d issue events (were %d, %d)", len(c), n, len(certs), issues)
			}
		})
	}

	// The messages are in the user's language.
	r = alice.post("/certificates/csr?lang=ko", csrForm("", "", ""))
	if a := decodeCSRAnswer(t, r); !strings.Contains(a.Error, "인증서 요청") {
		t.Errorf("Korean message: %q", a.Error)
	}
	// Cross-origin posts are refused like every other.
	r = alice.post("/certificates/csr", csrForm(csrPEM(t, p256(), &x509.CertificateRequest{}), "", ""),
		"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site CSR: %d", r.StatusCode)
	}

	// Vault itself refuses alice's token a certificate naming bob, whatever
	// the CSR says: the role ignores the CSR's names.
	tok := userToken(t, v, "alice", alicePW)
	bobCSR := csrPEM(t, p256(), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "bob@example.com"},
		EmailAddresses: []string{"bob@example.com"}})
	for name, data := range map[string]map[string]any{
		"bob's CSR, no common_name":  {"csr": bobCSR},
		"bob's CSR, bob's name":      {"csr": bobCSR, "common_name": "bob@example.com"},
		"alice's name, bob as a SAN": {"csr": bobCSR, "common_name": "alice@example.com", "alt_names": "bob@example.com"},
	} {
		if _, err := tok.Logical().Write("pki/sign/user-auth", data); err == nil {
			t.Errorf("%s: Vault signed it", name)
		}
	}
	sec, err := tok.Logical().Write("pki/sign/user-auth", map[string]any{"csr": bobCSR, "common_name": "alice@example.com"})
	if err != nil {
		t.Fatalf("alice's name with a CSR naming bob: %v", err)
	}
	blk, _ = pem.Decode([]byte(sec.Data["certificate"].(string)))
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "alice@example.com" || len(c.EmailAddresses) != 1 || c.EmailAddresses[0] != "alice@example.com" {
		t.Errorf("Vault took names from the CSR: CN %q emails %v", c.Subject.CommonName, c.EmailAddresses)
	}
	assertNoSecrets(t, p.Logs.String(), alicePW)
}

// TestDeviceKeysSetting: required refuses server-made keys with a message
// that says what to do, and keeps the CSR path; off refuses CSRs.
func TestDeviceKeysSetting(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	alicePW := v.Password(t, "alice")
	csr := func() string {
		return csrPEM(t, mustECKey(t, elliptic.P256()), &x509.CertificateRequest{})
	}

	req := startPortal(t, v, map[string]string{"CERTPORTAL_DEVICE_KEYS": "required"})
	alice := newBrowser(t, req.URL)
	alice.mustLogin("alice", alicePW)
	// The one choice there is reads as a requirement, not a recommendation.
	if home := string(alice.get("/").Body); !strings.Contains(home, "your company requires it") || strings.Contains(home, "(recommended)") ||
		strings.Contains(home, `id="key-server"`) {
		t.Errorf("issue form with device keys required: want the required wording and no server choice\n%s", home)
	}
	before := certSet(t, v)
	r := alice.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern"))
	if r.StatusCode != http.StatusForbidden || r.Header.Get("Content-Type") == "application/x-pkcs12" ||
		!bytes.Contains(r.Body, []byte("requires the key to be created on your device")) {
		t.Fatalf("server-made key with device keys required: %d\n%s", r.StatusCode, r.Body)
	}
	if len(certSet(t, v)) != len(before) {
		t.Fatal("Vault issued a key while device keys are required")
	}
	if r := alice.post("/certificates/csr", csrForm(csr(), "", "")); r.StatusCode != http.StatusOK {
		t.Fatalf("CSR with device keys required: %d\n%s", r.StatusCode, r.Body)
	}

	off := startPortal(t, v, map[string]string{"CERTPORTAL_DEVICE_KEYS": "off"})
	alice = newBrowser(t, off.URL)
	alice.mustLogin("alice", alicePW)
	r = alice.post("/certificates/csr", csrForm(csr(), "", ""))
	if a := decodeCSRAnswer(t, r); r.StatusCode != http.StatusForbidden || a.Code != "error.device_keys_off" {
		t.Fatalf("CSR with device keys off: %d %+v", r.StatusCode, a)
	}
	if r := alice.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern")); r.StatusCode != http.StatusOK {
		t.Fatalf("server path with device keys off: %d", r.StatusCode)
	}

	var out bytes.Buffer
	err := run(context.Background(), []string{"serve"}, func(k string) string {
		return map[string]string{"CERTPORTAL_DEVICE_KEYS": "sometimes"}[k]
	}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "device-keys") {
		t.Fatalf("CERTPORTAL_DEVICE_KEYS=sometimes: %v", err)
	}
}

// TestDeviceKeysSettingAtVault: `certportal setup` run with
// CERTPORTAL_DEVICE_KEYS=required (as serve reads it) takes pki/issue off the
// user, helpdesk and auditor policies, so a user's own token — one from
// before the run too — gets 403 from Vault for a Vault-made key, while
// pki/sign and the portal's device path keep working; setup with
// -device-keys offered gives issue back. A value setup does not know, or
// required with issuing on behalf, stops setup before Vault is touched.
func TestDeviceKeysSettingAtVault(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	pw := map[string]string{}
	for _, u := range []string{"alice", "helen", "audrey"} {
		pw[u] = v.Password(t, u)
	}
	issue := func(c *vaultapi.Client, user string) error {
		_, err := c.Logical().Write("pki/issue/user-auth", map[string]any{"common_name": user + "@example.com", "ttl": "2592000s"})
		return err
	}
	denied := func(err error) bool {
		var re *vaultapi.ResponseError
		return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
	}
	early := userToken(t, v, "alice", pw["alice"])
	if err := issue(early, "alice"); err != nil {
		t.Fatalf("issue with device keys offered: %v", err)
	}

	required := map[string]string{"CERTPORTAL_DEVICE_KEYS": "required"}
	if out, err := runSetupCmdEnv(v, required); err != nil {
		t.Fatalf("setup with device keys required: %v\n%s", err, out)
	}
	for _, u := range []string{"alice", "helen", "audrey"} {
		if err := issue(userToken(t, v, u, pw[u]), u); !denied(err) {
			t.Errorf("%s: pki/issue after setup with device keys required: %v, want 403 from Vault", u, err)
		}
	}
	if err := issue(early, "alice"); !denied(err) {
		t.Errorf("token from before the run: pki/issue: %v, want 403", err)
	}
	csr := func() string { return csrPEM(t, mustECKey(t, elliptic.P256()), &x509.CertificateRequest{}) }
	if _, err := early.Logical().Write("pki/sign/user-auth", map[string]any{"common_name": "alice@example.com", "ttl": "2592000s", "csr": csr()}); err != nil {
		t.Errorf("pki/sign with the user's token: %v", err)
	}
	p := startPortal(t, v, required)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", pw["alice"])
	if r := alice.post("/certificates/csr", csrForm(csr(), "", "")); r.StatusCode != http.StatusOK {
		t.Fatalf("device path through the portal: %d\n%s", r.StatusCode, r.Body)
	}

	// Nothing changes on a run setup refuses.
	for _, bad := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"CERTPORTAL_DEVICE_KEYS": "sometimes"}, nil, "device-keys"},
		{nil, []string{"-device-keys", "offered", "-device-keys", "always"}, "device-keys"},
		{required, []string{"--helpdesk-issue-on-behalf"}, "on behalf"},
	} {
		if out, err := runSetupCmdEnv(v, bad.env, bad.args...); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("setup %v %v: %v, want an error naming %q\n%s", bad.env, bad.args, err, bad.want, out)
		}
	}
	if err := issue(early, "alice"); !denied(err) {
		t.Errorf("pki/issue after refused runs: %v, want 403 still", err)
	}

	// The flag wins over the environment, as for serve.
	if out, err := runSetupCmdEnv(v, required, "-device-keys", "offered"); err != nil {
		t.Fatalf("setup -device-keys offered: %v\n%s", err, out)
	}
	if err := issue(early, "alice"); err != nil {
		t.Errorf("pki/issue after setup with device keys offered: %v", err)
	}
}
