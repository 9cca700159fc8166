package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestLoadProxySettings(t *testing.T) {
	base := map[string]string{"CERTPORTAL_APPROLE_ROLE_ID": "r", "CERTPORTAL_APPROLE_SECRET_ID": "s"}
	load := func(extra map[string]string) (Config, error) {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return Load(nil, func(k string) string { return env[k] }, io.Discard)
	}
	c, err := load(nil)
	if err != nil || c.HTTPS() || len(c.TrustedProxies) != 0 {
		t.Fatalf("defaults: https %v proxies %v err %v", c.HTTPS(), c.TrustedProxies, err)
	}
	c, err = load(map[string]string{"CERTPORTAL_PROXY_TLS": "true", "CERTPORTAL_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7,::1"})
	if err != nil || !c.HTTPS() || c.TLS() || len(c.TrustedProxies) != 3 || c.TrustedProxies[1].String() != "192.0.2.7/32" {
		t.Fatalf("proxy settings: https %v proxies %v err %v", c.HTTPS(), c.TrustedProxies, err)
	}
	for env, want := range map[string]string{
		"CERTPORTAL_TRUSTED_PROXIES": "trusted-proxies",
		"CERTPORTAL_PROXY_TLS":       "CERTPORTAL_PROXY_TLS",
	} {
		_, err := load(map[string]string{env: "proxy.example.com"})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=proxy.example.com: %v", env, err)
		}
	}
}

func TestLoadLoginLimits(t *testing.T) {
	env := map[string]string{"CERTPORTAL_APPROLE_ROLE_ID": "r", "CERTPORTAL_APPROLE_SECRET_ID": "s"}
	load := func(k, v string) (Config, error) {
		env[k] = v
		defer delete(env, k)
		return Load(nil, func(k string) string { return env[k] }, io.Discard)
	}
	c, err := load("", "")
	if err != nil || FormatNetworkLimits(c.LoginNetworkLimits) != "ipv4/24=80,ipv6/56=80,ipv6/48=320" ||
		c.LoginUserMaxFailures != 5 || c.LoginUserWindow.String() != "5m0s" || c.LoginFailureFloor.String() != "1s" ||
		c.LoginDeviceMaxFailures != 3 || c.LoginDeviceTTL.String() != "4320h0m0s" {
		t.Fatalf("defaults: %v %+v", err, c)
	}
	if c, err := load("CERTPORTAL_LOGIN_NETWORK_LIMITS", "ipv6/48=10, ipv4/16=5"); err != nil || len(c.LoginNetworkLimits) != 2 ||
		c.LoginNetworkLimits[0] != (NetworkLimit{IPv6: true, Bits: 48, Max: 10}) || c.LoginNetworkLimits[1] != (NetworkLimit{Bits: 16, Max: 5}) {
		t.Fatalf("network limits: %v %+v", err, c.LoginNetworkLimits)
	}
	for _, bad := range [][2]string{
		{"CERTPORTAL_LOGIN_NETWORK_LIMITS", "ipv4/32=5"}, {"CERTPORTAL_LOGIN_NETWORK_LIMITS", "ipv6/48"},
		{"CERTPORTAL_LOGIN_NETWORK_LIMITS", "ip/24=3"}, {"CERTPORTAL_LOGIN_USER_MAX_FAILURES", "x"},
		{"CERTPORTAL_LOGIN_USER_WINDOW", "1s"}, {"CERTPORTAL_LOGIN_FAILURE_FLOOR", "2m"},
		{"CERTPORTAL_LOGIN_DEVICE_MAX_FAILURES", "5"}, {"CERTPORTAL_LOGIN_DEVICE_MAX_FAILURES", "-1"},
		{"CERTPORTAL_LOGIN_DEVICE_TTL", "1m"}, {"CERTPORTAL_LOGIN_DEVICE_TTL", "9600h1s"},
	} {
		if _, err := load(bad[0], bad[1]); err == nil {
			t.Errorf("%s=%s accepted", bad[0], bad[1])
		}
	}
}

func TestLoadMetricsInterval(t *testing.T) {
	load := func(v string) (Config, error) {
		env := map[string]string{"CERTPORTAL_APPROLE_ROLE_ID": "r", "CERTPORTAL_APPROLE_SECRET_ID": "s", "CERTPORTAL_METRICS_INTERVAL": v}
		return Load(nil, func(k string) string { return env[k] }, io.Discard)
	}
	if c, err := load(""); err != nil || c.MetricsInterval != time.Minute {
		t.Fatalf("default: %s %v, want 1m", c.MetricsInterval, err)
	}
	if c, err := load("15s"); err != nil || c.MetricsInterval != 15*time.Second {
		t.Fatalf("15s: %s %v", c.MetricsInterval, err)
	}
	for _, bad := range []string{"0", "500ms", "-1m"} {
		if _, err := load(bad); err == nil || !strings.Contains(err.Error(), "CERTPORTAL_METRICS_INTERVAL") {
			t.Errorf("%s: %v, want refused naming CERTPORTAL_METRICS_INTERVAL", bad, err)
		}
	}
}

func TestLoadReconcileSettings(t *testing.T) {
	load := func(extra map[string]string) (Config, error) {
		env := map[string]string{"CERTPORTAL_APPROLE_ROLE_ID": "r", "CERTPORTAL_APPROLE_SECRET_ID": "s"}
		for k, v := range extra {
			env[k] = v
		}
		return Load(nil, func(k string) string { return env[k] }, io.Discard)
	}
	c, err := load(nil)
	if err != nil || c.ReconcileInterval.String() != "15m0s" || c.ReconcileAutoRevokeAfter.String() != "1h0m0s" || c.ReconcileAutoRevokeMax != 20 ||
		c.ReconcileAutoRevokePerUserMax != 5 {
		t.Fatalf("defaults: %v interval %s after %s max %d per user %d", err, c.ReconcileInterval, c.ReconcileAutoRevokeAfter,
			c.ReconcileAutoRevokeMax, c.ReconcileAutoRevokePerUserMax)
	}
	if got := MinAutoRevokeAfter(10 * time.Second).String(); got != "2m0s" {
		t.Errorf("shortest grace with the default Vault timeout: %s, want 2m0s", got)
	}
	// Unset, the per-employee bound stays below a run's bound lowered
	// before it existed, so such a configuration still starts.
	for max, want := range map[string]int{"20": 5, "6": 5, "5": 4, "2": 1, "1": 1} {
		c, err := load(map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX": max})
		if err != nil || c.ReconcileAutoRevokePerUserMax != want {
			t.Errorf("run's bound %s, per-employee unset: %v, per-employee %d; want %d", max, err, c.ReconcileAutoRevokePerUserMax, want)
		}
	}
	if c, err := Load([]string{"-reconcile-auto-revoke-per-user-max", "3", "-reconcile-auto-revoke-max", "4"},
		func(k string) string {
			return map[string]string{"CERTPORTAL_APPROLE_ROLE_ID": "r", "CERTPORTAL_APPROLE_SECRET_ID": "s"}[k]
		}, io.Discard); err != nil || c.ReconcileAutoRevokePerUserMax != 3 {
		t.Errorf("per-employee bound set by flag: %v, %d; want 3", err, c.ReconcileAutoRevokePerUserMax)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		ok   bool
	}{
		{"off", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER": "0", "CERTPORTAL_RECONCILE_INTERVAL": "0"}, true},
		{"shortest grace", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER": "2m"}, true},
		{"grace shorter than an issuance may take", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER": "1m59s"}, false},
		{"grace short for a slow Vault", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER": "2m", "CERTPORTAL_VAULT_TIMEOUT": "30s"}, false},
		{"short grace with a short Vault timeout", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER": "104s", "CERTPORTAL_VAULT_TIMEOUT": "2s"}, true},
		{"unparsable grace", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER": "soon"}, false},
		{"interval under a second", map[string]string{"CERTPORTAL_RECONCILE_INTERVAL": "500ms"}, false},
		{"no limit", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX": "0"}, false},
		{"per-employee bound just below the run's", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX": "19"}, true},
		{"smallest bounds", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX": "1", "CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX": "2"}, true},
		{"no per-employee bound", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX": "0"}, false},
		{"per-employee bound equal to the run's", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX": "20"}, false},
		{"per-employee bound above the run's", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX": "3", "CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX": "2"}, false},
		{"run's bound of one: the per-employee bound equals it", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX": "1", "CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX": "1"}, true},
		{"run's bound of one and two per employee", map[string]string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX": "2", "CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX": "1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(tc.env)
			if (err == nil) != tc.ok {
				t.Errorf("%v: err %v, want ok=%v", tc.env, err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "reconcile") && !strings.Contains(err.Error(), "vault-timeout") {
				t.Errorf("error does not name the setting: %v", err)
			}
			// The two bounds are refused together: the error names both.
			if _, perUser := tc.env["CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX"]; err != nil && perUser {
				for _, name := range []string{"CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX", "CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX"} {
					if !strings.Contains(err.Error(), name) {
						t.Errorf("error does not name %s: %v", name, err)
					}
				}
			}
		})
	}
}

func TestLoadMetricsListen(t *testing.T) {
	load := func(v string) (Config, error) {
		env := map[string]string{"CERTPORTAL_APPROLE_ROLE_ID": "r", "CERTPORTAL_APPROLE_SECRET_ID": "s", "CERTPORTAL_METRICS_LISTEN": v}
		return Load(nil, func(k string) string { return env[k] }, io.Discard)
	}
	if c, err := load(""); err != nil || c.MetricsListen != "" {
		t.Fatalf("default: %q %v, want none", c.MetricsListen, err)
	}
	if c, err := load("0.0.0.0:9090"); err != nil || c.MetricsListen != "0.0.0.0:9090" {
		t.Fatalf("0.0.0.0:9090: %q %v", c.MetricsListen, err)
	}
	for _, bad := range []string{"9090", "127.0.0.1:8080"} { // no port; the portal's own address
		if _, err := load(bad); err == nil || !strings.Contains(err.Error(), "CERTPORTAL_METRICS_LISTEN") {
			t.Errorf("%s: %v, want refused naming CERTPORTAL_METRICS_LISTEN", bad, err)
		}
	}
}
