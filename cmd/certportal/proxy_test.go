package main

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/nginxtest"
)

// TestBehindProxy: the portal behind Debian's nginx as a reverse proxy that
// terminates HTTPS. With the proxy trusted, the audit trail records the
// browser's address from X-Forwarded-For, never the part a client wrote;
// the session cookie is Secure with the __Host- prefix and HSTS is sent,
// although the portal itself speaks plain HTTP.
func TestBehindProxy(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_TRUSTED_PROXIES": "127.0.0.1", "CERTPORTAL_PROXY_TLS": "true"})
	portal := strings.TrimPrefix(p.URL, "http://")
	addr := nginxtest.FreeAddr(t)
	nginxtest.Start(t, addr, []byte(fmt.Sprintf(`server {
    listen %s;
    location / {
        proxy_pass http://%s;
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
}
`, addr, portal)))

	// The browser is at 127.0.0.2; nginx reaches the portal from 127.0.0.1.
	from := clientFrom
	login := func(c *http.Client, base, user, password string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(url.Values{"username": {user}, "password": {password}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", "6.6.6.6") // what an attacker would claim
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	viaProxy := login(from("127.0.0.2"), "http://"+addr, "alice", "wrong-password")
	if viaProxy.StatusCode != http.StatusUnauthorized {
		t.Fatalf("failed login through nginx: %d", viaProxy.StatusCode)
	}
	if login(from("127.0.0.2"), p.URL, "bob", "wrong-password").StatusCode != http.StatusUnauthorized {
		t.Fatal("failed login straight to the portal")
	}
	// That header came from a peer the portal does not trust: the operator
	// hears of it (a proxy missing from the list looks the same).
	if logs := p.Logs.String(); !strings.Contains(logs, "not a trusted proxy") || !strings.Contains(logs, "peer=127.0.0.2") {
		t.Error("no warning about X-Forwarded-For from an untrusted peer")
	}
	ok := login(from("127.0.0.2"), "http://"+addr, "alice", v.Password(t, "alice"))
	if ok.StatusCode != http.StatusSeeOther {
		t.Fatalf("login through nginx: %d", ok.StatusCode)
	}
	var cookie *http.Cookie
	for _, c := range ok.Cookies() {
		if strings.Contains(c.Name, "certportal_session") {
			cookie = c
		}
	}
	if cookie == nil || cookie.Name != "__Host-certportal_session" || !cookie.Secure || !cookie.HttpOnly || cookie.Path != "/" {
		t.Errorf("session cookie behind a TLS proxy: %+v", cookie)
	}
	if !strings.Contains(ok.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Error("no HSTS behind a TLS proxy")
	}

	db := openSQLite(t, p.DB)
	ipOf := func(actor, subject, outcome string) string {
		t.Helper()
		var ip string
		if err := db.QueryRow(`SELECT client_ip FROM audit_events WHERE action = 'login' AND subject = ? AND outcome = ? ORDER BY id DESC LIMIT 1`,
			subject, outcome).Scan(&ip); err != nil {
			t.Fatalf("%s %s login event: %v", subject, outcome, err)
		}
		return ip
	}
	if ip := ipOf("", "alice", "failure"); ip != "127.0.0.2" {
		t.Errorf("through the trusted proxy: client_ip %s, want the browser's 127.0.0.2", ip)
	}
	if ip := ipOf("", "bob", "failure"); ip != "127.0.0.2" {
		t.Errorf("straight from an untrusted peer: client_ip %s, want the peer 127.0.0.2", ip)
	}
	if ip := ipOf("alice", "alice", "success"); ip != "127.0.0.2" {
		t.Errorf("login through the proxy: client_ip %s", ip)
	}
}

// clientFrom is an HTTP client whose connections come from ip, another
// loopback address than the 127.0.0.1 every other client and proxy uses.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{
		Transport:     &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
