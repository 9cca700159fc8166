package config

import (
	"io"
	"strings"
	"testing"
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
