package setup

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Login MFA modes (setup --mfa).
const (
	MFAUnchanged = ""     // leave Vault's login MFA as it is
	MFATOTP      = "totp" // TOTP method and a login enforcement on the userpass mount
	MFAOff       = "off"  // no enforcement (the method and users' secrets stay, for re-enabling)
)

// TOTP parameters the portal's code page and normalisation assume: six
// digits, 30-second steps, one step of clock skew either way.
const (
	MFADigits = 6
	MFAPeriod = 30
	MFASkew   = 1
)

// mfaMethodData is the TOTP method setup writes. The QR code is Vault's
// (admin-generate returns it as a PNG), so the portal draws none itself.
func mfaMethodData(o Options) map[string]any {
	return map[string]any{
		"method_name":             o.MFAMethodName,
		"issuer":                  o.MFAIssuer,
		"period":                  MFAPeriod,
		"digits":                  MFADigits,
		"skew":                    MFASkew,
		"max_validation_attempts": o.MFAMaxAttempts,
		"qr_size":                 200,
	}
}

// mfa writes or removes Vault's login MFA for the userpass mount. It runs
// before the policies step: the service policy holds the enrolment paths
// exactly when MFA is on, and with MFAUnchanged that is read from Vault.
func (r *run) mfa(ctx context.Context) error {
	accessor, err := r.accessor(ctx)
	if err != nil {
		return err
	}
	enfPath := "identity/mfa/login-enforcement/" + r.o.MFAEnforcement
	enf, err := r.read(ctx, enfPath)
	if err != nil {
		return err
	}
	switch r.o.MFA {
	case MFAUnchanged:
		if enf != nil && enf.Data != nil {
			r.o.MFA = MFATOTP
			r.o.MFAMethodID, r.o.MFAAccessor = firstString(enf.Data["mfa_method_ids"]), accessor
			r.res.MFAMethodID = r.o.MFAMethodID
			r.step(say("setupstep.mfa_kept", r.o.MFAEnforcement), false)
		}
		return nil
	case MFAOff:
		if enf == nil {
			r.step(say("setupstep.mfa_none", r.o.MFAEnforcement), false)
			return nil
		}
		if _, err := r.c.Logical().DeleteWithContext(ctx, enfPath); err != nil {
			return fmt.Errorf("delete %s: %w", enfPath, err)
		}
		r.step(say("setupstep.mfa_removed", r.o.MFAEnforcement), true)
		return nil
	}
	health, err := r.c.Sys().HealthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("read Vault's version (sys/health): %w", err)
	}
	if err := checkMFAVersion(health.Version, r.o.MFAAllowOldVault); err != nil {
		return err
	}
	if older, _ := olderThan(health.Version, MFAMinVault); older {
		r.step(say("setupstep.mfa_old_vault", health.Version, MFAMinVault), false)
	}
	methodID, err := r.totpMethod(ctx)
	if err != nil {
		return err
	}
	r.res.MFAMethodID = methodID
	r.o.MFAMethodID, r.o.MFAAccessor = methodID, accessor
	want := map[string]any{"mfa_method_ids": []string{methodID}, "auth_method_accessors": []string{accessor}}
	if enf != nil && enf.Data != nil && sameStrings(enf.Data["mfa_method_ids"], want["mfa_method_ids"]) &&
		sameStrings(enf.Data["auth_method_accessors"], want["auth_method_accessors"]) &&
		emptyList(enf.Data["auth_method_types"]) && emptyList(enf.Data["identity_entity_ids"]) && emptyList(enf.Data["identity_group_ids"]) {
		r.step(say("setupstep.mfa_on", r.o.MFAEnforcement, r.o.UserpassMount), false)
		return nil
	}
	if _, err := r.write(ctx, enfPath, want); err != nil {
		return err
	}
	r.step(say("setupstep.mfa_on", r.o.MFAEnforcement, r.o.UserpassMount), true)
	return nil
}

// totpMethod finds the portal's TOTP method by name, creating it or
// bringing its parameters back to what the portal assumes.
func (r *run) totpMethod(ctx context.Context) (string, error) {
	want := mfaMethodData(r.o)
	list, err := r.c.Logical().ListWithContext(ctx, "identity/mfa/method/totp")
	if err != nil {
		return "", fmt.Errorf("list TOTP methods: %w", err)
	}
	var ids []string
	if list != nil && list.Data != nil {
		keys, _ := list.Data["keys"].([]any)
		for _, k := range keys {
			if id, ok := k.(string); ok {
				ids = append(ids, id)
			}
		}
	}
	for _, id := range ids {
		m, err := r.read(ctx, "identity/mfa/method/totp/"+id)
		if err != nil {
			return "", err
		}
		if m == nil || m.Data == nil || fmt.Sprint(m.Data["name"]) != r.o.MFAMethodName {
			continue
		}
		same := true
		for k, v := range want {
			if k == "method_name" {
				continue
			}
			if fmt.Sprint(m.Data[k]) != fmt.Sprint(v) {
				same = false
			}
		}
		if same {
			r.step(say("setupstep.totp", r.o.MFAMethodName), false)
			return id, nil
		}
		if _, err := r.write(ctx, "identity/mfa/method/totp/"+id, want); err != nil {
			return "", err
		}
		r.step(say("setupstep.totp", r.o.MFAMethodName), true)
		return id, nil
	}
	s, err := r.write(ctx, "identity/mfa/method/totp", want)
	if err != nil {
		return "", err
	}
	id := ""
	if s != nil && s.Data != nil {
		id, _ = s.Data["method_id"].(string)
	}
	if id == "" {
		return "", fmt.Errorf("create TOTP method %s: no method_id in Vault's answer", r.o.MFAMethodName)
	}
	r.step(say("setupstep.totp_created", r.o.MFAMethodName), true)
	return id, nil
}

// mfaServicePolicy lets the portal's identity enrol users (MFA totp only):
// read its enforcement (method id and accessor), find a userpass user's
// entity, and generate or destroy that user's secret for the portal's
// method. It never reads a secret (Vault has no path for that), and it
// cannot create entities or aliases: a user's first login makes them, and
// enrolment starts with that login.
func mfaServicePolicy(o Options) string {
	if o.MFA != MFATOTP || o.MFAMethodID == "" || o.MFAAccessor == "" {
		return ""
	}
	return fmt.Sprintf(`# Login MFA enrolment (setup --mfa totp).
path %q {
  capabilities = ["read"]
}
path %q {
  capabilities = ["update"]
  allowed_parameters = {
    "alias_name" = []
    "alias_mount_accessor" = [%q]
  }
}
path %q {
  capabilities = ["update"]
  allowed_parameters = {
    "method_id" = [%q]
    "entity_id" = []
  }
}
path %q {
  capabilities = ["update"]
  allowed_parameters = {
    "method_id" = [%q]
    "entity_id" = []
  }
}
`, "identity/mfa/login-enforcement/"+o.MFAEnforcement, "identity/lookup/entity", o.MFAAccessor,
		"identity/mfa/method/totp/admin-generate", o.MFAMethodID, "identity/mfa/method/totp/admin-destroy", o.MFAMethodID)
}

func firstString(v any) string {
	l, _ := v.([]any)
	if len(l) == 0 {
		return ""
	}
	s, _ := l[0].(string)
	return s
}

func emptyList(v any) bool {
	list, _ := v.([]any)
	return len(list) == 0
}

// MFAMinVault is the oldest Vault whose Login MFA the portal relies on:
// before 1.20.1, passcodes padded with whitespace bypassed the TOTP rate
// limit and the reuse check (CVE-2025-6015), so a code could be guessed
// or replayed.
const MFAMinVault = "1.20.1"

// checkMFAVersion refuses Login MFA on a Vault older than MFAMinVault, or
// whose version cannot be read, unless the operator accepted it.
func checkMFAVersion(version string, allowOld bool) error {
	older, err := olderThan(version, MFAMinVault)
	if err != nil {
		if allowOld {
			return nil
		}
		return fmt.Errorf("mfa: cannot tell Vault's version from sys/health (%q), so cannot check it is %s or newer; pass --mfa-allow-old-vault to go on anyway", version, MFAMinVault)
	}
	if older && !allowOld {
		return fmt.Errorf("mfa: Vault %s is older than %s: whitespace-padded TOTP codes slip past its rate limit and reuse checks (CVE-2025-6015); upgrade Vault, or pass --mfa-allow-old-vault to accept that", version, MFAMinVault)
	}
	return nil
}

// olderThan compares Vault version strings such as "1.19.5+ent" or
// "v1.21.2-rc1": the numeric major.minor.patch only; a pre-release of the
// minimum counts as older.
func olderThan(version, min string) (bool, error) {
	v, pre, err := versionParts(version)
	if err != nil {
		return false, err
	}
	m, _, err := versionParts(min)
	if err != nil {
		return false, err
	}
	for i := range v {
		if v[i] != m[i] {
			return v[i] < m[i], nil
		}
	}
	return pre, nil
}

func versionParts(s string) ([3]int, bool, error) {
	var out [3]int
	core := strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexByte(core, '+'); i >= 0 {
		core = core[:i]
	}
	pre := false
	if i := strings.IndexByte(core, '-'); i >= 0 {
		core, pre = core[:i], true
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return out, false, fmt.Errorf("version %q: want major.minor.patch", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || len(p) > 6 {
			return out, false, fmt.Errorf("version %q: want major.minor.patch", s)
		}
		out[i] = n
	}
	return out, pre, nil
}

func validMFA(o Options) error {
	switch o.MFA {
	case MFAUnchanged, MFAOff, MFATOTP:
	default:
		return fmt.Errorf("mfa %q: want totp or off", o.MFA)
	}
	if o.MFAEnforcement == "" || strings.ContainsAny(o.MFAEnforcement, "/ ") || o.MFAMethodName == "" || o.MFAIssuer == "" {
		return fmt.Errorf("mfa: enforcement name, method name and issuer are required (no slashes or spaces in the enforcement name)")
	}
	if o.MFAMaxAttempts < 1 || o.MFAMaxAttempts > 20 {
		return fmt.Errorf("mfa max validation attempts %d: want 1 to 20", o.MFAMaxAttempts)
	}
	return nil
}
