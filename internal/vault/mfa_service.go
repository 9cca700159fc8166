package vault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
)

// ErrMFAAlreadyEnrolled: the entity already holds a TOTP secret for the
// method; Vault generated nothing (reset destroys it first).
var ErrMFAAlreadyEnrolled = errors.New("vault: user already has an mfa secret")

// MFAEnforcement is what the portal reads of its login enforcement: the
// TOTP method it enrols users in and the userpass mount it applies to.
type MFAEnforcement struct {
	MethodID string
	Accessor string
}

// ReadMFAEnforcement reads identity/mfa/login-enforcement/<name>. A missing
// enforcement is ErrNotFound (MFA is off).
func (s *Service) ReadMFAEnforcement(ctx context.Context, name string) (*MFAEnforcement, error) {
	var out *MFAEnforcement
	err := s.do(ctx, func(cl *vaultapi.Client) error {
		sec, err := cl.Logical().ReadWithContext(ctx, "identity/mfa/login-enforcement/"+name)
		if err != nil {
			return err
		}
		if sec == nil || sec.Data == nil {
			return nil
		}
		first := func(k string) string {
			l, _ := sec.Data[k].([]any)
			if len(l) == 0 {
				return ""
			}
			v, _ := l[0].(string)
			return v
		}
		out = &MFAEnforcement{MethodID: first("mfa_method_ids"), Accessor: first("auth_method_accessors")}
		return nil
	})
	if err != nil {
		return nil, classify("read mfa enforcement", err, ErrRefused)
	}
	if out == nil || out.MethodID == "" || out.Accessor == "" {
		return nil, fmt.Errorf("read mfa enforcement %s: %w", name, ErrNotFound)
	}
	return out, nil
}

// LookupEntity returns the id of the entity holding the userpass alias
// username; ErrNotFound when there is none (the user never logged in).
func (s *Service) LookupEntity(ctx context.Context, accessor, username string) (string, error) {
	id := ""
	err := s.do(ctx, func(cl *vaultapi.Client) error {
		sec, err := cl.Logical().WriteWithContext(ctx, "identity/lookup/entity", map[string]any{
			"alias_name": username, "alias_mount_accessor": accessor})
		if err != nil || sec == nil || sec.Data == nil {
			return err
		}
		id, _ = sec.Data["id"].(string)
		return nil
	})
	if err != nil {
		return "", classify("lookup entity", err, ErrRefused)
	}
	if id == "" {
		return "", fmt.Errorf("lookup entity: %w", ErrNotFound)
	}
	return id, nil
}

// TOTPKey is a freshly generated TOTP secret: the otpauth URL and Vault's
// PNG QR code of it. Shown to its user once; never stored or logged.
type TOTPKey struct {
	URL string
	PNG []byte
}

// GenerateTOTP asks Vault to generate entityID's secret for methodID
// (admin-generate). Not retried: a second call finds the secret and
// generates nothing.
func (s *Service) GenerateTOTP(ctx context.Context, methodID, entityID string) (*TOTPKey, error) {
	tok, err := s.Token(ctx)
	if err != nil {
		return nil, err
	}
	cl, err := s.c.withToken(tok)
	if err != nil {
		return nil, err
	}
	sec, err := cl.Logical().WriteWithContext(ctx, "identity/mfa/method/totp/admin-generate", map[string]any{
		"method_id": methodID, "entity_id": entityID})
	if err != nil {
		return nil, classify("generate totp secret", err, ErrRefused)
	}
	if sec == nil || sec.Data == nil {
		// Vault answers an entity that already has a secret with only a warning.
		return nil, fmt.Errorf("generate totp secret: %w", ErrMFAAlreadyEnrolled)
	}
	u, _ := sec.Data["url"].(string)
	b64, _ := sec.Data["barcode"].(string)
	if !strings.HasPrefix(u, "otpauth://totp/") {
		return nil, fmt.Errorf("generate totp secret: no otpauth url in the answer: %w", ErrUnavailable)
	}
	png, err := decodeB64(b64)
	if err != nil {
		return nil, fmt.Errorf("generate totp secret: barcode: %w", ErrUnavailable)
	}
	return &TOTPKey{URL: u, PNG: png}, nil
}

// DestroyTOTP removes entityID's secret for methodID (admin-destroy); an
// entity without one is not an error.
func (s *Service) DestroyTOTP(ctx context.Context, methodID, entityID string) error {
	err := s.do(ctx, func(cl *vaultapi.Client) error {
		_, err := cl.Logical().WriteWithContext(ctx, "identity/mfa/method/totp/admin-destroy", map[string]any{
			"method_id": methodID, "entity_id": entityID})
		return err
	})
	if err != nil {
		return classify("destroy totp secret", err, ErrRefused)
	}
	return nil
}

func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
