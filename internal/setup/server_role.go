package setup

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// Names of what EnsureServerRole writes, and the server names it allows by
// default (the `certportal setup` flag that sets them defaults to this).
const (
	DefaultServerRole  = "nginx-server"
	DefaultServerMount = "pki_server"
	NginxPolicyName    = "certportal-nginx"
	DefaultServerNames = "localhost"
)

var (
	roleNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
	// Plain DNS names only: the role allows exactly these names, so a glob,
	// template or wildcard here would silently widen what the token can get.
	serverDomainRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
)

// validateServerRole checks what EnsureServerRole is asked to write.
func validateServerRole(o Options, name string, allowedDomains []string) error {
	var errs []error
	switch {
	case !roleNameRE.MatchString(name):
		errs = append(errs, fmt.Errorf("server role %q: want letters, digits, '-' and '_'", name))
	case name == o.Role:
		// One role for both would let every employee token mint server
		// certificates, and Nginx certificates pass as client certificates.
		errs = append(errs, fmt.Errorf("server role %q: must differ from the user role", name))
	}
	if len(allowedDomains) == 0 {
		errs = append(errs, errors.New("server names: at least one is required (e.g. localhost)"))
	}
	for _, d := range allowedDomains {
		if len(d) > 253 || !serverDomainRE.MatchString(d) {
			errs = append(errs, fmt.Errorf("server name %q: want a plain DNS name such as app.example.com, without wildcards, spaces or quotes", d))
		}
	}
	return errors.Join(errs...)
}

// ServerRoleData is the role Nginx's own TLS certificate comes from: server
// authentication for exactly allowedDomains. localhost (beyond being listed)
// and IP SANs are off unless o asks for them; which IPs is then the Nginx
// policy's to say, as a role cannot list them. It sits in the server mount,
// whose CA Nginx does not trust for clients; and with client_flag off its
// certificates carry no clientAuth usage either, so Nginx (OpenSSL checks the
// purpose) never admits one as a client certificate.
func ServerRoleData(o Options, allowedDomains []string) map[string]any {
	maxTTL := min(o.MaxTTL, 90*24*time.Hour)
	keyUsage := []string{"DigitalSignature"}
	if o.KeyType == "rsa" {
		// TLS 1.2 RSA key exchange encrypts to the server key.
		keyUsage = append(keyUsage, "KeyEncipherment")
	}
	return map[string]any{
		"allowed_domains":                    append([]string(nil), allowedDomains...),
		"allowed_domains_template":           false,
		"allow_bare_domains":                 true,
		"allow_subdomains":                   false,
		"allow_glob_domains":                 false,
		"allow_wildcard_certificates":        false,
		"allow_any_name":                     false,
		"allow_localhost":                    o.ServerAllowLocalhost,
		"allow_ip_sans":                      len(o.ServerIPSANs) > 0,
		"allowed_uri_sans":                   []string{},
		"allowed_other_sans":                 []string{},
		"enforce_hostnames":                  true,
		"server_flag":                        true,
		"client_flag":                        false,
		"code_signing_flag":                  false,
		"email_protection_flag":              false,
		"key_type":                           o.KeyType,
		"key_bits":                           o.KeyBits,
		"key_usage":                          keyUsage,
		"ext_key_usage":                      []string{},
		"max_ttl":                            fmt.Sprintf("%d", int64(maxTTL/time.Second)),
		"ttl":                                fmt.Sprintf("%d", int64(min(maxTTL, 30*24*time.Hour)/time.Second)),
		"organization":                       []string{o.Organization},
		"require_cn":                         true,
		"no_store":                           false,
		"generate_lease":                     false,
		"basic_constraints_valid_for_non_ca": true,
		"not_before_duration":                "30s",
	}
}

// NginxPolicy is the HCL of the policy for `certportal nginx-certs`: issue
// from the server role in the server mount, read what Nginx checks client
// certificates against, and rebuild the CRLs before they expire.
func NginxPolicy(o Options, role string) string {
	var b strings.Builder
	b.WriteString("# Written by certportal setup. For `certportal nginx-certs`: Nginx's server\n" +
		"# certificate (from its own mount), the client CA chain and the CRLs of every CA in it.\n")
	// Only what nginx-certs (and the Nomad template) send. Any ttl: the role's
	// max_ttl caps it, and Nomad templates choose their own.
	var extra map[string][]string
	if len(o.ServerIPSANs) > 0 {
		extra = map[string][]string{"ip_sans": o.ServerIPSANs}
	}
	b.WriteString(issueStanza(o.ServerMount+"/issue/"+role, nil, extra))
	b.WriteString("# Vault serves these without a token today; listed so that this policy says\n" +
		"# everything nginx-certs (crl/pem) and a Nomad template (cert/crl) read.\n")
	for _, m := range []string{o.PKIMount, o.ServerMount} {
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"read\"]\n}\n", m+"/cert/ca_chain")
	}
	for _, m := range []string{o.PKIMount, o.RootMount} {
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"read\"]\n}\n", m+"/crl/pem")
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"read\"]\n}\n", m+"/cert/crl")
	}
	b.WriteString("# Vault does not rebuild an unchanged CRL by itself (auto_rebuild is off by\n" +
		"# default), and once one expires Nginx refuses every certificate. Rotating\n" +
		"# re-signs the same list with new dates; it revokes nothing.\n")
	for _, m := range []string{o.PKIMount, o.RootMount} {
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"read\"]\n}\n", m+"/crl/rotate")
	}
	return b.String()
}

// EnsureServerRole writes the server role name in the server mount (making
// that mount an intermediate under the root first, if it is not one yet) and
// the certportal-nginx policy that lets `certportal nginx-certs` use it. A
// role of that name left in the issuing mount by an older setup is removed.
// Like the rest of setup it checks before it writes, and returns one Step per
// item. c must carry an admin token.
func EnsureServerRole(ctx context.Context, c *vaultapi.Client, o Options, name string, allowedDomains []string) ([]Step, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := validateServerRole(o, name, allowedDomains); err != nil {
		return nil, err
	}
	r := &run{c: c, o: o, res: &Result{}}
	// Setup's run made the server CA already; report it only when this call
	// had to (EnsureServerRole on its own, against an older Vault).
	ca := &run{c: c, o: o, res: &Result{}}
	err := ca.serverCA(ctx)
	for _, st := range ca.res.Steps {
		if st.Changed {
			r.res.Steps = append(r.res.Steps, st)
		}
	}
	if err != nil {
		return r.res.Steps, err
	}

	path := o.ServerMount + "/roles/" + name
	want := ServerRoleData(o, allowedDomains)
	cur, err := r.read(ctx, path)
	if err != nil {
		return r.res.Steps, err
	}
	if cur != nil && roleMatches(cur.Data, want) {
		r.step(say("setupstep.role", path), false)
	} else {
		if _, err := r.write(ctx, path, want); err != nil {
			return r.res.Steps, err
		}
		r.step(say("setupstep.role", path), true)
	}
	// The portal's AppRole can revoke anything in the issuing mount, so a
	// server role there would keep Nginx's certificate in its reach.
	old := o.PKIMount + "/roles/" + name
	if cur, err := r.read(ctx, old); err != nil {
		return r.res.Steps, err
	} else if cur != nil {
		if _, err := c.Logical().DeleteWithContext(ctx, old); err != nil {
			return r.res.Steps, fmt.Errorf("delete %s: %w", old, err)
		}
		r.step(say("setupstep.role_removed_server", old, o.ServerMount), true)
	}

	pol := NginxPolicy(o, name)
	got, err := c.Sys().GetPolicyWithContext(ctx, NginxPolicyName)
	if err != nil {
		return r.res.Steps, fmt.Errorf("read policy %s: %w", NginxPolicyName, err)
	}
	if strings.TrimSpace(got) == strings.TrimSpace(pol) {
		r.step(say("setupstep.policy", NginxPolicyName), false)
		return r.res.Steps, nil
	}
	if err := c.Sys().PutPolicyWithContext(ctx, NginxPolicyName, pol); err != nil {
		return r.res.Steps, fmt.Errorf("write policy %s: %w", NginxPolicyName, err)
	}
	r.step(say("setupstep.policy", NginxPolicyName), true)
	return r.res.Steps, nil
}
