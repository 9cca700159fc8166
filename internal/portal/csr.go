package portal

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/bundle"
	"github.com/certportal/certportal/internal/store"
)

// Device-key modes (CERTPORTAL_DEVICE_KEYS): whether users may, or must,
// have their key made in the browser and send only a CSR.
const (
	DeviceKeysOff      = "off"
	DeviceKeysOffered  = "offered"
	DeviceKeysRequired = "required"
)

// EncryptionDevice is what the inventory recorded as the encryption of a
// device-key certificate before the browser's choice was posted with the
// CSR (rows from then keep it: their file's encryption is unknown).
const EncryptionDevice = "device"

// KnownEncryption reports whether an inventory row's encryption is one a
// form can preselect: modern or compat (not empty, not EncryptionDevice).
func KnownEncryption(e string) bool {
	return e == string(bundle.Modern) || e == string(bundle.Compat)
}

// MaxCSRLen bounds the CSR PEM a user may post: an EC P-256 request is
// about 500 bytes, an RSA-4096 one under 2 KiB.
const MaxCSRLen = 8 << 10

// CSRRequest is the device-key form: a CSR made in the browser, with the
// validity and label the user chose.
type CSRRequest struct {
	CSR   string // PEM "CERTIFICATE REQUEST"
	TTL   string
	Label string
	// Encryption is the .p12 encryption the browser will pack the file
	// with (modern or compat; empty is modern, as on the server path): the
	// portal never sees the file, so it records what the page says.
	Encryption  string
	RenewSerial string // renewing this certificate of the user's
	RevokeOld   bool   // and revoking it once the new one is issued
}

// Signed is a certificate for a key the portal never saw.
type Signed struct {
	Serial      string
	Subject     string
	NotAfter    time.Time
	Certificate []byte // PEM
	Chain       []byte // PEM, issuing CA first
	Label       string
	// Filename and ASCIIName are the .p12's names, as for a server-made one.
	Filename, ASCIIName string
	// Fingerprint is the SHA-256 of the public key (SubjectPublicKeyInfo).
	Fingerprint string
}

// DeviceKeys returns the operator's device-key mode.
func (s *Service) DeviceKeys() string {
	if s.opts.DeviceKeys == "" {
		return DeviceKeysOffered
	}
	return s.opts.DeviceKeys
}

// oidExtendedKeyUsage and friends are the requested extensions the CSR
// check understands; any other is refused.
var (
	oidSubjectAltName    = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidKeyUsage          = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtendedKeyUsage  = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidEKUClientAuth     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	oidCommonName        = asn1.ObjectIdentifier{2, 5, 4, 3}
	keyUsageDigitalSig   = x509.KeyUsageDigitalSignature
	errCSRNotOneRequest  = errors.New("not one PEM certificate request")
	errCSRExtraAfterPEM  = errors.New("data after the certificate request")
	errCSRUnknownKeyType = errors.New("unknown role key type")
)

// parseCSR decodes exactly one PEM certificate request.
func parseCSR(p string) (*x509.CertificateRequest, string, error) {
	p = strings.TrimSpace(p)
	if !strings.HasPrefix(p, "-----BEGIN ") {
		// pem.Decode skips any text before the block: what was posted
		// would not be what is checked.
		return nil, "", errCSRNotOneRequest
	}
	block, rest := pem.Decode([]byte(p))
	if block == nil || (block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST") {
		return nil, "", errCSRNotOneRequest
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, "", errCSRExtraAfterPEM
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, "", err
	}
	// Vault gets a clean re-encoding: no PEM headers or text around it.
	return csr, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: block.Bytes})), nil
}

// checkCSR refuses a CSR the portal would not sign as asked: a bad
// signature, a key the role does not allow, a subject or requested
// extension Vault would ignore or override (another name, a server-auth
// usage, extra SANs). Vault would sign most of these anyway, with the
// user's name and the role's usages; refusing them tells the user plainly
// that they will not get what they asked for, and keeps the request that
// reaches Vault to the public key alone.
func (s *Service) checkCSR(csr *x509.CertificateRequest, subject string) error {
	if err := csr.CheckSignature(); err != nil {
		return &Error{Code: EInvalid, Field: "csr", Message: "error.csr_signature", Err: err}
	}
	if err := checkKey(csr.PublicKey, s.opts.KeyType); err != nil {
		return &Error{Code: EInvalid, Field: "csr", Message: "error.csr_key_type", Err: err}
	}
	for _, a := range csr.Subject.Names {
		if !a.Type.Equal(oidCommonName) {
			return &Error{Code: EInvalid, Field: "csr", Message: "error.csr_subject", Err: fmt.Errorf("subject attribute %v", a.Type)}
		}
	}
	if cn := csr.Subject.CommonName; cn != "" && cn != subject {
		return &Error{Code: EForbidden, Field: "csr", Message: "error.csr_other_identity", Err: fmt.Errorf("CSR for %q", cn)}
	}
	for _, e := range csr.Extensions {
		switch {
		case e.Id.Equal(oidSubjectAltName):
			// Only the user's own address, which the certificate carries
			// anyway. Go's parse keeps DNS, email, IP and URI names and
			// drops the rest (otherName such as a Windows UPN,
			// directoryName, ...): each name is looked at in the raw.
			if err := onlyEmailSANs(e.Value); err != nil {
				return &Error{Code: EInvalid, Field: "csr", Message: "error.csr_sans", Err: err}
			}
			if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.URIs) > 0 {
				return &Error{Code: EInvalid, Field: "csr", Message: "error.csr_sans", Err: errors.New("DNS, IP or URI SANs requested")}
			}
			for _, m := range csr.EmailAddresses {
				if m != subject {
					return &Error{Code: EInvalid, Field: "csr", Message: "error.csr_sans", Err: fmt.Errorf("SAN %q", m)}
				}
			}
			if len(csr.EmailAddresses) == 0 {
				// A SAN extension of a kind Go does not parse (otherName,
				// directoryName, ...): not one the portal honours.
				return &Error{Code: EInvalid, Field: "csr", Message: "error.csr_sans", Err: errors.New("SAN of another type")}
			}
		case e.Id.Equal(oidExtendedKeyUsage):
			var ekus []asn1.ObjectIdentifier
			if rest, err := asn1.Unmarshal(e.Value, &ekus); err != nil || len(rest) != 0 {
				return &Error{Code: EInvalid, Field: "csr", Message: "error.csr_invalid", Err: fmt.Errorf("extended key usage: %v", err)}
			}
			for _, u := range ekus {
				if !u.Equal(oidEKUClientAuth) {
					return &Error{Code: EInvalid, Field: "csr", Message: "error.csr_usage", Err: fmt.Errorf("extended key usage %v", u)}
				}
			}
		case e.Id.Equal(oidKeyUsage):
			var bits asn1.BitString
			if rest, err := asn1.Unmarshal(e.Value, &bits); err != nil || len(rest) != 0 {
				return &Error{Code: EInvalid, Field: "csr", Message: "error.csr_invalid", Err: fmt.Errorf("key usage: %v", err)}
			}
			for i := 0; i < bits.BitLength; i++ {
				if bits.At(i) == 1 && x509.KeyUsage(1<<i) != keyUsageDigitalSig {
					return &Error{Code: EInvalid, Field: "csr", Message: "error.csr_usage", Err: fmt.Errorf("key usage bit %d", i)}
				}
			}
		default:
			return &Error{Code: EInvalid, Field: "csr", Message: "error.csr_extension", Err: fmt.Errorf("extension %v", e.Id)}
		}
	}
	return nil
}

// onlyEmailSANs refuses a subjectAltName extension holding any general
// name but rfc822Name ([1] IA5String).
func onlyEmailSANs(der []byte) error {
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) != 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence {
		return fmt.Errorf("subject alternative names: not a sequence (%v)", err)
	}
	for b := seq.Bytes; len(b) > 0; {
		var gn asn1.RawValue
		var err error
		if b, err = asn1.Unmarshal(b, &gn); err != nil {
			return fmt.Errorf("subject alternative names: %w", err)
		}
		if gn.Class != asn1.ClassContextSpecific || gn.Tag != 1 {
			return fmt.Errorf("SAN of type [%d]", gn.Tag)
		}
	}
	return nil
}

// checkKey checks pub against the role's key type ("ec-256", "rsa-2048"):
// the same curve for EC, at least the bits for RSA, as Vault's sign does.
func checkKey(pub any, want string) error {
	typ, bitsText, _ := strings.Cut(want, "-")
	bits, err := strconv.Atoi(bitsText)
	if err != nil {
		return fmt.Errorf("%w %q", errCSRUnknownKeyType, want)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if typ == "ec" && k.Curve.Params().BitSize == bits {
			return nil
		}
		return fmt.Errorf("EC %s key, role wants %s", k.Curve.Params().Name, want)
	case *rsa.PublicKey:
		if typ == "rsa" && k.N.BitLen() >= bits {
			return nil
		}
		return fmt.Errorf("RSA-%d key, role wants %s", k.N.BitLen(), want)
	}
	return fmt.Errorf("%T key, role wants %s", pub, want)
}

// PublicKeyFingerprint is the SHA-256 of a SubjectPublicKeyInfo, in hex:
// what the trail records of a key the portal never saw.
func PublicKeyFingerprint(spki []byte) string {
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:])
}

// IssueCSR signs a CSR made on the user's device, with the user's own
// token, from the same role, under the same cap and on the same record as
// Issue; the certificate carries the user's name whatever the CSR says.
// The portal never holds the private key or the file's password.
func (s *Service) IssueCSR(ctx context.Context, id *Identity, req CSRRequest) (*Signed, error) {
	if !id.Has(RoleEmployee) {
		return nil, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	if s.DeviceKeys() == DeviceKeysOff {
		return nil, &Error{Code: EForbidden, Message: "error.device_keys_off"}
	}
	ttl, err := time.ParseDuration(req.TTL)
	if req.TTL == "" {
		ttl, err = s.opts.DefaultTTL, nil
	}
	if err != nil || !slices.Contains(s.opts.TTLs, ttl) {
		return nil, Invalid("ttl", "error.ttl_invalid")
	}
	enc, err := bundle.ParseEncryption(req.Encryption)
	if err != nil {
		return nil, Invalid("encryption", "error.encryption_invalid")
	}
	if err := CheckText("label", req.Label, 4*MaxLabelLen); err != nil {
		return nil, err
	}
	label, err := ValidLabel(req.Label)
	if err != nil {
		return nil, err
	}
	if len(req.CSR) > MaxCSRLen {
		return nil, Invalid("csr", "error.csr_invalid")
	}
	csr, csrPEM, err := parseCSR(req.CSR)
	if err != nil {
		return nil, &Error{Code: EInvalid, Field: "csr", Message: "error.csr_invalid", Err: err}
	}
	subject := s.subjectFor(id.Username)
	if err := s.checkCSR(csr, subject); err != nil {
		var pe *Error
		if errors.As(err, &pe) && pe.Message == "error.csr_other_identity" {
			s.RecordDenied(ctx, id, "certificate request for "+audit.Clean(csr.Subject.CommonName, audit.MaxField))
		}
		return nil, err
	}
	var old *store.Certificate
	replaces := ""
	if req.RenewSerial != "" {
		if old, err = s.ownCertificate(ctx, id, req.RenewSerial); err != nil {
			return nil, err
		}
		if req.RevokeOld {
			replaces = old.Serial // the old one goes as the new one comes
		}
	}
	// Once under way the signing runs to the end whatever the client does,
	// as Issue's (detach).
	ctx, cancel := s.detach(ctx)
	defer cancel()
	reservation, err := s.reserve(ctx, id.Username, replaces, "error.cap_reached")
	if err != nil {
		return nil, err
	}
	fp := PublicKeyFingerprint(csr.RawSubjectPublicKeyInfo)
	in := issuance{
		token: id.Token, role: s.opts.Role, actor: id.Username, username: id.Username, action: audit.ActionIssue,
		ttl: ttl, enc: enc, renews: req.RenewSerial,
		revokeOld: old != nil && req.RevokeOld, old: old, reservation: reservation, label: label, csr: csrPEM,
		details: map[string]string{"public_key_sha256": fp},
	}
	dl, err := s.issue(ctx, in)
	if err != nil {
		return nil, err
	}
	return &Signed{
		Serial: dl.Serial, Subject: dl.Subject, NotAfter: dl.NotAfter, Label: dl.Label,
		Certificate: dl.CertificatePEM, Chain: dl.ChainPEM, Filename: dl.Filename, ASCIIName: dl.ASCIIName,
		Fingerprint: fp,
	}, nil
}
