package setup_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/nginxcerts"
	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/vault"
)

// tricks are the issue parameters a token holder could add to the portal's
// request to get a certificate the portal would never hand out: a validity
// past the role's max_ttl (not_after is not capped by it), extra names, a
// chosen serial, a CN left out of the SANs.
var tricks = []struct {
	name string
	key  string
	val  any
}{
	{"not_after", "not_after", "2031-01-01T00:00:00Z"},
	{"not_after upper case", "NOT_AFTER", "2031-01-01T00:00:00Z"},
	{"alt_names", "alt_names", "x@example.com"},
	{"ip_sans", "ip_sans", "127.0.0.1"},
	{"uri_sans", "uri_sans", "spiffe://example.com/x"},
	{"other_sans", "other_sans", "1.3.6.1.4.1.311.20.2.3;UTF8:x@example.com"},
	{"serial_number", "serial_number", "x"},
	{"exclude_cn_from_sans", "exclude_cn_from_sans", true},
	{"ttl of five years", "ttl", "43800h"},
	{"ttl list", "ttl", "86400s,43800h"},
	{"ttl as a number", "ttl", 157680000},
	{"user_ids", "user_ids", "x"},
	{"remove_roots_from_chain", "remove_roots_from_chain", true},
	{"format der", "format", "der"},
}

// mustDenied fails unless err is Vault's 403: the policy, not the role,
// refused the request, before the PKI engine looked at it.
func mustDenied(tb testing.TB, err error, what string) {
	tb.Helper()
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
		tb.Fatalf("%s: err = %v, want 403 permission denied from the policy", what, err)
	}
}

// TestPoliciesAllowOnlyPortalParameters: with their own Vault tokens, users
// (employee, helpdesk, auditor) and the Nginx token can send exactly what the
// portal and nginx-certs send, and Vault refuses every other parameter or
// value with 403 — while the portal's own issuance keeps working.
func TestPoliciesAllowOnlyPortalParameters(t *testing.T) {
	v := testenv.StartVault(t)
	ctx := context.Background()
	o := setup.Defaults()
	o.DemoUsers, o.HelpdeskOnBehalf = true, true
	res, err := setup.Run(ctx, v.Admin, o)
	if err != nil {
		t.Fatal(err)
	}
	v.Setup = res
	vc, err := vault.New(vault.Config{Addr: v.Addr})
	if err != nil {
		t.Fatal(err)
	}

	for _, u := range []string{"alice", "helen", "audrey"} {
		c := login(t, v, u)
		cn := u + "@example.com"
		t.Run(u, func(t *testing.T) {
			for _, tr := range tricks {
				_, err := c.Logical().Write("pki/issue/user-auth", map[string]any{"common_name": cn, tr.key: tr.val})
				mustDenied(t, err, tr.name)
			}
			// What the portal sends, for every validity it offers by default.
			for _, ttl := range []time.Duration{24 * time.Hour, 8760 * time.Hour} {
				is, err := vc.Issue(ctx, c.Token(), vault.IssueRequest{Mount: "pki", Role: "user-auth", CommonName: cn, TTL: ttl})
				if err != nil {
					t.Fatalf("portal issue with %s: %v", ttl, err)
				}
				if got := is.Certificate.NotAfter.Sub(is.Certificate.NotBefore); got > ttl+time.Minute {
					t.Fatalf("portal issue with %s: valid %s", ttl, got)
				}
			}
			// A validity the portal does not offer.
			_, err := vc.Issue(ctx, c.Token(), vault.IssueRequest{Mount: "pki", Role: "user-auth", CommonName: cn, TTL: time.Hour})
			if !errors.Is(err, vault.ErrPermissionDenied) {
				t.Fatalf("issue for 1h (not offered): %v", err)
			}
			// pki/sign (keys made on the device): the same allow-list plus csr.
			csr := deviceCSR(t)
			for _, tr := range tricks {
				_, err := c.Logical().Write("pki/sign/user-auth", map[string]any{"common_name": cn, "csr": csr, tr.key: tr.val})
				mustDenied(t, err, "sign with "+tr.name)
			}
			if _, err := vc.Sign(ctx, c.Token(), vault.SignRequest{Mount: "pki", Role: "user-auth", CSR: csr, CommonName: cn, TTL: 720 * time.Hour}); err != nil {
				t.Fatalf("portal sign: %v", err)
			}
			_, err = vc.Sign(ctx, c.Token(), vault.SignRequest{Mount: "pki", Role: "user-auth", CSR: csr, CommonName: cn, TTL: time.Hour})
			if !errors.Is(err, vault.ErrPermissionDenied) {
				t.Fatalf("sign for 1h (not offered): %v", err)
			}
		})
	}

	t.Run("helpdesk on behalf", func(t *testing.T) {
		helen := login(t, v, "helen")
		for _, tr := range tricks {
			_, err := helen.Logical().Write("pki/issue/"+o.OnBehalfRole, map[string]any{"common_name": "bob@example.com", tr.key: tr.val})
			mustDenied(t, err, tr.name)
		}
		if _, err := vc.Issue(ctx, helen.Token(), vault.IssueRequest{Mount: "pki", Role: o.OnBehalfRole, CommonName: "bob@example.com", TTL: 720 * time.Hour}); err != nil {
			t.Fatalf("portal on-behalf issue: %v", err)
		}
	})

	t.Run("nginx", func(t *testing.T) {
		nginx := token(t, v, setup.NginxPolicyName)
		for _, tr := range tricks {
			if tr.key == "ttl" {
				continue // any ttl: the role's max_ttl caps it, and Nomad templates choose their own
			}
			_, err := nginx.Logical().Write("pki_server/issue/"+setup.DefaultServerRole, map[string]any{"common_name": "localhost", tr.key: tr.val})
			mustDenied(t, err, tr.name)
		}
		sc, err := nginxcerts.IssueServer(ctx, nginx, nginxcerts.ServerRequest{Mount: "pki_server", Role: setup.DefaultServerRole, ServerName: "localhost", TTL: 48 * time.Hour})
		if err != nil {
			t.Fatalf("nginx-certs issue: %v", err)
		}
		if sc.Leaf.Subject.CommonName != "localhost" || len(sc.Leaf.IPAddresses) != 0 {
			t.Fatalf("server certificate %v %v", sc.Leaf.Subject, sc.Leaf.IPAddresses)
		}
	})

	t.Run("service revoke", func(t *testing.T) {
		svc := token(t, v, o.ServicePolicy)
		_, err := svc.Logical().Write("pki/revoke", map[string]any{"serial_number": "01", "cert_pem": "x"})
		mustDenied(t, err, "revoke with cert_pem")
	})
}

// oldUserPolicy is the user policy setup wrote before it restricted
// parameters: any parameter, any value.
const oldUserPolicy = "# Written by certportal setup.\npath \"pki/issue/user-auth\" {\n  capabilities = [\"update\"]\n}\n"

// TestSetupUpgradesOldPolicies: a Vault configured by an older setup gets the
// restricted policies on the next run, reported as changed.
func TestSetupUpgradesOldPolicies(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	ctx := context.Background()
	o := setup.Defaults()
	oldNginx := "path \"pki/issue/nginx-server\" {\n  capabilities = [\"update\"]\n}\n"
	for name, hcl := range map[string]string{o.UserPolicy: oldUserPolicy, o.HelpdeskPolicy: oldUserPolicy, setup.NginxPolicyName: oldNginx} {
		if err := v.Admin.Sys().PutPolicy(name, hcl); err != nil {
			t.Fatal(err)
		}
	}
	alice := login(t, v, "alice")
	if _, err := alice.Logical().Write("pki/issue/user-auth", map[string]any{"common_name": "alice@example.com", "ttl": "43800h"}); err != nil {
		t.Fatalf("old policy: %v", err)
	}
	res, err := setup.Run(ctx, v.Admin, o)
	if err != nil {
		t.Fatal(err)
	}
	changed := map[string]bool{}
	for _, s := range res.Steps {
		changed[s.What] = s.Changed
	}
	for _, name := range []string{o.UserPolicy, o.HelpdeskPolicy, setup.NginxPolicyName} {
		if !changed["policy "+name] {
			t.Errorf("policy %s not reported as changed: %+v", name, res.Steps)
		}
	}
	if changed["policy "+o.AuditorPolicy] {
		t.Errorf("policy %s rewritten though it was current", o.AuditorPolicy)
	}
	// The same token, now under the new policy.
	_, err = alice.Logical().Write("pki/issue/user-auth", map[string]any{"common_name": "alice@example.com", "not_after": "2031-01-01T00:00:00Z"})
	mustDenied(t, err, "not_after after upgrade")
	if _, err := alice.Logical().Write("pki/sign/user-auth", map[string]any{"common_name": "alice@example.com", "csr": deviceCSR(t)}); err != nil {
		t.Fatalf("sign after upgrade: %v", err)
	}
	res, err = setup.Run(ctx, v.Admin, o)
	if err != nil || res.Changed() {
		t.Fatalf("third run: %v, changed %+v", err, res.Steps)
	}
}

// TestServerRoleNoIPOrLocalhostByDefault: the default Nginx role admits
// neither IP SANs nor localhost beyond the names the operator listed.
func TestServerRoleNoIPOrLocalhostByDefault(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	sec, err := v.Admin.Logical().Read("pki_server/roles/" + setup.DefaultServerRole)
	if err != nil || sec == nil {
		t.Fatalf("read role: %v", err)
	}
	if sec.Data["allow_ip_sans"] != false || sec.Data["allow_localhost"] != false {
		t.Fatalf("allow_ip_sans=%v allow_localhost=%v, want both false", sec.Data["allow_ip_sans"], sec.Data["allow_localhost"])
	}
	nginx := token(t, v, setup.NginxPolicyName)
	if _, err := nginx.Logical().Write("pki_server/issue/"+setup.DefaultServerRole, map[string]any{"common_name": "localhost", "ip_sans": "127.0.0.1"}); err == nil {
		t.Fatal("IP SAN issued by default")
	}
	// localhost listed as a server name (the default) still works: the
	// operator named it.
	if _, err := nginx.Logical().Write("pki_server/issue/"+setup.DefaultServerRole, map[string]any{"common_name": "localhost"}); err != nil {
		t.Fatalf("localhost as a listed name: %v", err)
	}
	// A production name list: localhost only with the explicit option.
	o := setup.Defaults()
	for _, allow := range []bool{false, true} {
		o.ServerAllowLocalhost = allow
		if _, err := setup.EnsureServerRole(context.Background(), v.Admin, o, setup.DefaultServerRole, []string{"app.example.org"}); err != nil {
			t.Fatal(err)
		}
		_, err := nginx.Logical().Write("pki_server/issue/"+setup.DefaultServerRole, map[string]any{"common_name": "localhost"})
		if (err == nil) != allow {
			t.Fatalf("allow_localhost=%v: issue for localhost: %v", allow, err)
		}
	}
}

// TestServiceCannotRevokeServerCert: the portal's AppRole may revoke users'
// certificates, and Vault cannot limit that to some serials; so Nginx's
// server certificate, as nginx-certs gets it with its defaults, must come
// from a mount the AppRole cannot touch.
func TestServiceCannotRevokeServerCert(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	ctx := context.Background()
	nginx := token(t, v, setup.NginxPolicyName)
	cfg := nginxcerts.Config{
		Dir: t.TempDir(), ServerName: "localhost",
		PKIMount: nginxcerts.DefaultPKIMount, RootMount: nginxcerts.DefaultRootMount, Role: nginxcerts.DefaultRole,
		ServerMount: nginxcerts.DefaultServerMount,
	}
	res, err := nginxcerts.Sync(ctx, nginx, cfg, time.Now())
	if err != nil || !res.Issued {
		t.Fatalf("sync: %v", err)
	}
	svc, err := v.Admin.Clone()
	if err != nil {
		t.Fatal(err)
	}
	svc.ClearToken()
	s, err := svc.Logical().Write("auth/approle/login", map[string]any{"role_id": v.Setup.ServiceRoleID, "secret_id": v.Setup.ServiceSecretID})
	if err != nil {
		t.Fatal(err)
	}
	svc.SetToken(s.Auth.ClientToken)
	mounts := []string{"pki", "pki_root", "pki_server"}
	for _, m := range mounts {
		if _, err := svc.Logical().Write(m+"/revoke", map[string]any{"serial_number": res.ServerSerial}); err == nil {
			t.Errorf("the portal's AppRole revoked Nginx's server certificate in %s", m)
		}
	}
	found := false
	for _, m := range mounts {
		c, err := v.Admin.Logical().Read(m + "/cert/" + res.ServerSerial)
		if err != nil || c == nil || c.Data["certificate"] == nil || c.Data["certificate"] == "" {
			continue
		}
		found = true
		if rt := fmt.Sprint(c.Data["revocation_time"]); rt != "0" && rt != "<nil>" {
			t.Errorf("server certificate revoked in %s at %v", m, rt)
		}
		if m == "pki" {
			t.Errorf("server certificate issued from the users' mount %s", m)
		}
	}
	if !found {
		t.Fatal("server certificate not found in any mount")
	}
}

// TestSetupMovesServerRole: a server role an older setup left in the users'
// mount is removed (its certificates would be revocable by the portal), and
// the role now lives in the server mount.
func TestSetupMovesServerRole(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	o := setup.Defaults()
	if _, err := v.Admin.Logical().Write("pki/roles/"+setup.DefaultServerRole, setup.ServerRoleData(o, []string{"localhost"})); err != nil {
		t.Fatal(err)
	}
	res, err := setup.Run(context.Background(), v.Admin, o)
	if err != nil {
		t.Fatal(err)
	}
	reported := false
	for _, s := range res.Steps {
		reported = reported || (s.Changed && strings.Contains(s.What, "pki/roles/"+setup.DefaultServerRole+" removed"))
	}
	if !reported {
		t.Fatalf("removal not reported: %+v", res.Steps)
	}
	if sec, err := v.Admin.Logical().Read("pki/roles/" + setup.DefaultServerRole); err != nil || sec != nil {
		t.Fatalf("old role still there: %v %v", err, sec)
	}
	if sec, err := v.Admin.Logical().Read("pki_server/roles/" + setup.DefaultServerRole); err != nil || sec == nil {
		t.Fatalf("no role in pki_server: %v", err)
	}
	if res, err := setup.Run(context.Background(), v.Admin, o); err != nil || res.Changed() {
		t.Fatalf("second run: %v %+v", err, res)
	}
}

// TestServicePolicySelfRotation: with --secret-id-self-rotate (the default)
// the portal's own token may issue the next secret id for its role with
// nothing but metadata — so with the role's TTL, uses and CIDRs — and look
// one up; it may not destroy one, choose a longer life, read the role id or
// change the role. Switched off, setup takes generating away again (the
// lookup, for the expiry metric, stays).
func TestServicePolicySelfRotation(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	ctx := context.Background()
	role := "auth/approle/role/certportal"
	svcLogin := func(secretID string) *vaultapi.Client {
		t.Helper()
		c, err := v.Admin.Clone()
		if err != nil {
			t.Fatal(err)
		}
		c.ClearToken()
		s, err := c.Logical().Write("auth/approle/login", map[string]any{"role_id": v.Setup.ServiceRoleID, "secret_id": secretID})
		if err != nil {
			t.Fatalf("approle login: %v", err)
		}
		c.SetToken(s.Auth.ClientToken)
		return c
	}
	svc := svcLogin(v.Setup.ServiceSecretID)
	gen, err := svc.Logical().Write(role+"/secret-id", map[string]any{"metadata": `{"created_by":"test"}`})
	if err != nil || gen == nil || gen.Data["secret_id"] == "" {
		t.Fatalf("service generates its next secret id: %v", err)
	}
	next, _ := gen.Data["secret_id"].(string)
	if ttl := fmt.Sprint(gen.Data["secret_id_ttl"]); ttl != "2592000" {
		t.Errorf("generated secret id ttl %s, want the role's 720h", ttl)
	}
	svcLogin(next) // the new one logs in
	look, err := svc.Logical().Write(role+"/secret-id/lookup", map[string]any{"secret_id": v.Setup.ServiceSecretID})
	if err != nil || look == nil || look.Data["secret_id_accessor"] == "" {
		t.Fatalf("service looks up its secret id: %v", err)
	}
	for name, req := range map[string]struct {
		path string
		data map[string]any
	}{
		"a longer ttl":        {role + "/secret-id", map[string]any{"ttl": "87600h"}},
		"no expiry":           {role + "/secret-id", map[string]any{"ttl": 0}},
		"other networks":      {role + "/secret-id", map[string]any{"cidr_list": "0.0.0.0/0"}},
		"token networks":      {role + "/secret-id", map[string]any{"token_bound_cidrs": "0.0.0.0/0"}},
		"uses":                {role + "/secret-id", map[string]any{"num_uses": 0}},
		"a custom secret id":  {role + "/custom-secret-id", map[string]any{"secret_id": "chosen-by-thief"}},
		"destroy":             {role + "/secret-id/destroy", map[string]any{"secret_id": v.Setup.ServiceSecretID}},
		"destroy by accessor": {role + "/secret-id-accessor/destroy", map[string]any{"secret_id_accessor": look.Data["secret_id_accessor"]}},
		"change the role":     {role, map[string]any{"secret_id_ttl": 0}},
		"another role":        {"auth/approle/role/other/secret-id", map[string]any{"metadata": "{}"}},
	} {
		_, err := svc.Logical().Write(req.path, req.data)
		mustDenied(t, err, name)
	}
	_, err = svc.Logical().Read(role + "/role-id")
	mustDenied(t, err, "read the role id")
	_, err = svc.Logical().List(role + "/secret-id")
	mustDenied(t, err, "list secret ids")

	o := setup.Defaults()
	o.SecretIDSelfRotate = false
	if _, err := setup.Run(ctx, v.Admin, o); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Logical().Write(role+"/secret-id", map[string]any{"metadata": "{}"})
	mustDenied(t, err, "generate with self-rotation off")
	// The lookup stays: the expiry metric needs it.
	if _, err := svc.Logical().Write(role+"/secret-id/lookup", map[string]any{"secret_id": next}); err != nil {
		t.Fatalf("lookup with self-rotation off: %v", err)
	}
}

// deviceCSR is a CSR as the browser makes it: EC P-256, the user's name.
func deviceCSR(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// TestSetupHardensRoleForCSRs: a role written by an older setup (names taken
// from the CSR, Vault's default) is rewritten on the next run, after which a
// CSR's names are ignored; a third run changes nothing.
func TestSetupHardensRoleForCSRs(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	ctx := context.Background()
	o := setup.Defaults()
	if _, err := v.Admin.Logical().Write("pki/roles/user-auth", map[string]any{"use_csr_common_name": true, "use_csr_sans": true}); err != nil {
		t.Fatal(err)
	}
	res, err := setup.Run(ctx, v.Admin, o)
	if err != nil {
		t.Fatal(err)
	}
	changed := false
	for _, s := range res.Steps {
		if s.What == "role pki/roles/user-auth" {
			changed = s.Changed
		}
	}
	if !changed {
		t.Fatalf("old role not reported as changed: %+v", res.Steps)
	}
	sec, err := v.Admin.Logical().Read("pki/roles/user-auth")
	if err != nil || sec.Data["use_csr_common_name"] != false || sec.Data["use_csr_sans"] != false {
		t.Fatalf("role after setup: %v %v", sec.Data, err)
	}
	// Without common_name the CSR's own CN is not used: refused.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice@example.com"}}, k)
	alice := login(t, v, "alice")
	if _, err := alice.Logical().Write("pki/sign/user-auth", map[string]any{
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}); err == nil {
		t.Fatal("Vault signed with the CSR's CN")
	}
	if res, err := setup.Run(ctx, v.Admin, o); err != nil || res.Changed() {
		t.Fatalf("third run: %v, changed %+v", err, res.Steps)
	}
}
