package bundle

import (
	"crypto/x509"
	"encoding/pem"
)

// ParseCertificates parses every CERTIFICATE block of a PEM bundle, skipping
// other block types. It lives here, beside the encoder that consumes its
// result, so the browser's WebAssembly module (internal/devicekey) and the
// Vault adapter share it without the module pulling in Vault's client.
func ParseCertificates(rest []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out, nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}
