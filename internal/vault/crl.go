package vault

import (
	"crypto/x509"
	"fmt"
	"io"
	"strings"
)

func parseCRLSerials(r io.Reader) ([]string, error) {
	der, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read CRL: %w", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("parse CRL: %w", err)
	}
	out := make([]string, 0, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		out = append(out, FormatSerial(e.SerialNumber.Bytes()))
	}
	return out, nil
}

// FormatSerial writes serial bytes the way Vault does: lowercase hex pairs
// joined by ':'.
func FormatSerial(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}
