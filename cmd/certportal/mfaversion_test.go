package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv"
)

// TestMFASetupRefusesOldVault: setup --mfa totp reads Vault's version from
// sys/health and refuses one older than 1.20.1 (CVE-2025-6015), writing no
// enforcement, unless --mfa-allow-old-vault. A real Vault cannot be made
// old on cue, so a proxy in front of devvault rewrites only the version
// sys/health reports; every other call reaches the real Vault.
func TestMFASetupRefusesOldVault(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	target, err := url.Parse(v.Addr)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path != "/v1/sys/health" {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		var h map[string]any
		if err := json.Unmarshal(b, &h); err != nil {
			return err
		}
		h["version"] = "1.19.5"
		b, _ = json.Marshal(h)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	cfg := vaultapi.DefaultConfig()
	cfg.Address = srv.URL
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(v.Admin.Token())

	o := setup.Defaults()
	o.MFA = setup.MFATOTP
	_, err = setup.Run(context.Background(), c, o)
	if err == nil || !strings.Contains(err.Error(), "1.19.5 is older than 1.20.1") || !strings.Contains(err.Error(), "--mfa-allow-old-vault") {
		t.Fatalf("setup --mfa totp on Vault 1.19.5: %v, want a refusal naming the version and the override", err)
	}
	if s, err := v.Admin.Logical().Read("identity/mfa/login-enforcement/" + o.MFAEnforcement); err != nil || s != nil {
		t.Fatalf("a refused setup left an enforcement: %v %v", s, err)
	}
	if s, err := v.Admin.Logical().List("identity/mfa/method/totp"); err != nil || s != nil {
		t.Fatalf("a refused setup left a TOTP method: %v %v", s, err)
	}

	o.MFAAllowOldVault = true
	res, err := setup.Run(context.Background(), c, o)
	if err != nil {
		t.Fatalf("setup --mfa totp --mfa-allow-old-vault: %v", err)
	}
	if res.MFAMethodID == "" {
		t.Fatal("the accepted run wrote no TOTP method")
	}
	found := false
	for _, s := range res.Steps {
		found = found || strings.Contains(s.What, "older than 1.20.1 (--mfa-allow-old-vault)")
	}
	if !found {
		t.Errorf("the accepted run does not say it runs on an old Vault: %+v", res.Steps)
	}
	if s, err := v.Admin.Logical().Read("identity/mfa/login-enforcement/" + o.MFAEnforcement); err != nil || s == nil {
		t.Fatalf("no enforcement after the accepted run: %v", err)
	}
}
