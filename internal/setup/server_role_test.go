package setup_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv"
)

func TestEnsureServerRoleValidates(t *testing.T) {
	tests := []struct {
		name    string
		role    string
		domains []string
		wantErr string
	}{
		{"same as user role", "user-auth", []string{"localhost"}, "must differ from the user role"},
		{"bad role name", "a/b", []string{"localhost"}, `server role "a/b"`},
		{"no names", setup.DefaultServerRole, nil, "at least one is required"},
		{"wildcard", setup.DefaultServerRole, []string{"*.example.com"}, `server name "*.example.com"`},
		{"template", setup.DefaultServerRole, []string{"{{identity.entity.name}}.example.com"}, "want a plain DNS name"},
		{"space", setup.DefaultServerRole, []string{"a.example.com b.example.com"}, "want a plain DNS name"},
		{"quote", setup.DefaultServerRole, []string{`app"`}, "want a plain DNS name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A nil client shows validation happens before Vault is touched.
			_, err := setup.EnsureServerRole(context.Background(), nil, setup.Defaults(), tt.role, tt.domains)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("EnsureServerRole = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestServerRoleInVault checks what Vault itself enforces with the role and
// policy: the Nginx token gets server certificates for the allowed names and
// nothing else, and users cannot use the server role at all.
func TestServerRoleInVault(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	ctx := context.Background()
	o := setup.Defaults()
	o.ServerIPSANs = []string{"127.0.0.1"}
	domains := []string{"localhost", "app.example.org"}
	// Not the default name, so that the first run writes both items even once
	// setup.Run writes the default role itself.
	const role = "edge-server"

	steps, err := setup.EnsureServerRole(ctx, v.Admin, o, role, domains)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2 || !steps[0].Changed || !steps[1].Changed {
		t.Fatalf("first run steps %+v, want role and policy written", steps)
	}
	steps, err = setup.EnsureServerRole(ctx, v.Admin, o, role, domains)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.Changed {
			t.Fatalf("second run changed %q: setup must be idempotent", s.What)
		}
	}
	if pol, err := v.Admin.Sys().GetPolicy(setup.NginxPolicyName); err != nil || strings.TrimSpace(pol) != strings.TrimSpace(setup.NginxPolicy(o, role)) {
		t.Fatalf("policy in Vault differs (%v):\n%s", err, pol)
	}

	nginx := token(t, v, setup.NginxPolicyName)
	alice := login(t, v, "alice")
	tests := []struct {
		name    string
		c       *vaultapi.Client
		path    string
		data    map[string]any
		wantErr string // empty: must succeed
	}{
		{"server name", nginx, "pki_server/issue/" + role, map[string]any{"common_name": "app.example.org"}, ""},
		{"localhost with loopback IP", nginx, "pki_server/issue/" + role, map[string]any{"common_name": "localhost", "ip_sans": "127.0.0.1"}, ""},
		{"IP SAN not listed", nginx, "pki_server/issue/" + role, map[string]any{"common_name": "localhost", "ip_sans": "192.0.2.1"}, "permission denied"},
		{"listed and unlisted IP SAN", nginx, "pki_server/issue/" + role, map[string]any{"common_name": "localhost", "ip_sans": "127.0.0.1,192.0.2.1"}, "permission denied"},
		{"name not allowed", nginx, "pki_server/issue/" + role, map[string]any{"common_name": "evil.example.org"}, "not allowed"},
		{"subdomain", nginx, "pki_server/issue/" + role, map[string]any{"common_name": "x.app.example.org"}, "not allowed"},
		{"wildcard", nginx, "pki_server/issue/" + role, map[string]any{"common_name": "*.example.org"}, "not allowed"},
		{"user identity", nginx, "pki_server/issue/" + role, map[string]any{"common_name": "alice@example.com"}, "not allowed"},
		{"nginx token on the user role", nginx, "pki/issue/user-auth", map[string]any{"common_name": "alice@example.com"}, "permission denied"},
		{"user token on the server role", alice, "pki_server/issue/" + role, map[string]any{"common_name": "localhost"}, "permission denied"},
		{"nginx token on the users' mount", nginx, "pki/issue/" + role, map[string]any{"common_name": "localhost"}, "permission denied"},
		{"nginx token elsewhere", nginx, "pki_root/issue/" + role, map[string]any{"common_name": "localhost"}, "permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.c.Logical().Write(tt.path, tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("write %s = %v, want error containing %q", tt.path, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("write %s: %v", tt.path, err)
			}
			p, _ := s.Data["certificate"].(string)
			b, _ := pem.Decode([]byte(p))
			if b == nil {
				t.Fatal("no certificate")
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			// Without clientAuth a stolen Nginx key cannot log in anywhere
			// that admits portal certificates.
			if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
				t.Fatalf("ext key usage %v, want serverAuth only", c.ExtKeyUsage)
			}
		})
	}

	t.Run("nginx token can rotate and read CRLs", func(t *testing.T) {
		for _, m := range []string{"pki", "pki_root"} {
			if _, err := nginx.Logical().Read(m + "/crl/rotate"); err != nil {
				t.Errorf("rotate %s: %v", m, err)
			}
		}
	})
}

func token(tb testing.TB, v *testenv.Vault, policies ...string) *vaultapi.Client {
	tb.Helper()
	s, err := v.Admin.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: policies, TTL: "1h"})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := v.Admin.Clone()
	if err != nil {
		tb.Fatal(err)
	}
	c.SetToken(s.Auth.ClientToken)
	return c
}

func login(tb testing.TB, v *testenv.Vault, user string) *vaultapi.Client {
	tb.Helper()
	c, err := v.Admin.Clone()
	if err != nil {
		tb.Fatal(err)
	}
	c.ClearToken()
	s, err := c.Logical().Write("auth/userpass/login/"+user, map[string]any{"password": v.Password(tb, user)})
	if err != nil {
		tb.Fatal(err)
	}
	c.SetToken(s.Auth.ClientToken)
	return c
}
