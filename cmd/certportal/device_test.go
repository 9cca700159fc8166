package main

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// deviceCookie is the device cookie's name on a plain-HTTP portal (over
// HTTPS it is __Host-certportal_device).
const deviceCookie = "certportal_device"

// browserFrom is a browser (cookie jar, no redirects followed) connecting
// from a loopback address of its own, so that per-address limits do not mix
// it up with the attacker.
func browserFrom(t *testing.T, base, ip string) *client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := clientFrom(ip)
	c.Jar, c.Timeout = jar, 60*time.Second
	return &client{t: t, base: base, c: c}
}

// cookieOf is the value of the named cookie the browser holds, "" for none.
func (b *client) cookieOf(name string) string {
	u, _ := url.Parse(b.base)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (b *client) login(user, password string) *response {
	b.t.Helper()
	return b.post("/login", url.Values{"username": {user}, "password": {password}})
}

// exhaustName has a stranger (from ip) fail logins for user until the
// portal refuses the name: n failures reach Vault, the rest are 429.
func exhaustName(t *testing.T, base, ip, user string, n, tries int) {
	t.Helper()
	stranger := clientFrom(ip)
	for i := 0; i < tries; i++ {
		r := postLogin(t, stranger, base, user, fmt.Sprintf("guess-%d", i))
		want := http.StatusUnauthorized
		if i >= n {
			want = http.StatusTooManyRequests
		}
		if r.StatusCode != want {
			t.Fatalf("stranger's attempt %d for %s: %d, want %d", i+1, user, r.StatusCode, want)
		}
	}
}

func mustStatus(t *testing.T, r *response, want int, what string) {
	t.Helper()
	if r.StatusCode != want {
		t.Fatalf("%s: status %d, want %d (location %q)\n%s", what, r.StatusCode, want, r.Header.Get("Location"), r.Body)
	}
}

// TestDeviceCookieOwnerGetsPastLockout (issue 9, review finding L1): a
// stranger who fails five passwords for alice makes the portal refuse her
// name — a browser that never logged in as alice is still refused, even
// with her right password — but alice's own browser, which holds the device
// cookie of an earlier login, gets in. Its failures look exactly like
// anyone's; per-address limits still apply to it; Vault never locks her.
func TestDeviceCookieOwnerGetsPastLockout(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_LOGIN_FAILURE_FLOOR": "200ms", "CERTPORTAL_LOGIN_MAX_FAILURES": "6"})
	alice := browserFrom(t, p.URL, "127.0.0.31")
	alice.mustLogin("alice", v.Password(t, "alice"))
	mustStatus(t, alice.post("/logout", nil), http.StatusSeeOther, "logout")

	exhaustName(t, p.URL, "127.0.0.32", "alice", 5, 8)
	other := browserFrom(t, p.URL, "127.0.0.33")
	mustStatus(t, other.login("alice", v.Password(t, "alice")), http.StatusTooManyRequests, "right password from a browser without a device cookie")

	// Her own browser: a typo is an ordinary 401 — the same page a
	// stranger's wrong password gets, after the same floor — then in.
	start := time.Now()
	typo := alice.login("alice", "not-her-password")
	took := time.Since(start)
	mustStatus(t, typo, http.StatusUnauthorized, "alice's typo from her own browser")
	stranger := postLogin(t, clientFrom("127.0.0.34"), p.URL, "helen", "not-her-password") // a name of the same length
	if strings.ReplaceAll(string(typo.Body), "alice", "NAME") != strings.ReplaceAll(string(stranger.Body), "helen", "NAME") {
		t.Errorf("a trusted browser's failure page differs from a stranger's:\n%s\n---\n%s", typo.Body, stranger.Body)
	}
	if got, want := headerSet(typo.Header), headerSet(stranger.Header); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("headers differ: %q vs %q", got, want)
	}
	if took < 200*time.Millisecond {
		t.Errorf("a trusted browser's failure took %s, under the 200ms floor", took)
	}
	mustLanded(t, alice.login("alice", v.Password(t, "alice")), "alice's own browser during the lockout")
	mustStatus(t, alice.post("/logout", nil), http.StatusSeeOther, "logout")

	// Per-address limits are not lifted by the cookie: her cookie sent from
	// the stranger's address, which has used its 6 attempts, is refused.
	exhaustName(t, p.URL, "127.0.0.32", "alice", 1, 1) // the 6th attempt of .32
	r := postLogin(t, clientFrom("127.0.0.32"), p.URL, "alice", v.Password(t, "alice"), "Cookie", deviceCookie+"="+alice.cookieOf(deviceCookie))
	mustStatus(t, r, http.StatusTooManyRequests, "device cookie from an address over its limit")

	if !vaultLogin(t, v, "alice", v.Password(t, "alice")) {
		t.Fatal("alice is locked in Vault")
	}
	// The cookie: HttpOnly, SameSite=Lax, long-lived, not Secure over
	// plain HTTP (the HTTPS form is __Host- and Secure: TestDeviceCookieHTTPS).
	set := alice.login("alice", v.Password(t, "alice")).Header.Values("Set-Cookie")
	var dc string
	for _, c := range set {
		if strings.HasPrefix(c, deviceCookie+"=") {
			dc = c
		}
	}
	if !strings.Contains(dc, "HttpOnly") || !strings.Contains(dc, "SameSite=Lax") || !strings.Contains(dc, "Max-Age=15552000") || !strings.Contains(dc, "Path=/") {
		t.Errorf("device cookie %q: want HttpOnly, SameSite=Lax, Path=/, Max-Age 180 days", dc)
	}
	assertNoSecrets(t, p.Logs.String(), alice.cookieOf(deviceCookie), strings.Split(alice.cookieOf(deviceCookie), ".")[1])
	// The trail says which attempts came from a known browser.
	known := map[string]int{}
	for _, e := range sessionEvents(t, openSQLite(t, p.DB), "login", "alice") {
		if e.Details["device"] == "known" {
			known[e.Outcome]++
		}
	}
	if known["failure"] != 1 || known["success"] != 2 || len(known) != 2 {
		t.Errorf("login events with device=known: %v, want 1 failure (the typo) and 2 successes", known)
	}
}

// TestDeviceCookieForgedGivesNoExemption: only a cookie the portal issued
// to alice's own completed login exempts a login as alice: bob's, one with
// any part changed, one signed with another key or made up are ignored —
// the browser is a stranger and refused with the name.
func TestDeviceCookieForgedGivesNoExemption(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_LOGIN_FAILURE_FLOOR": "10ms", "CERTPORTAL_SESSION_KEY": strings.Repeat("cd", 32)})
	otherKey := startPortal(t, v, map[string]string{"CERTPORTAL_SESSION_KEY": strings.Repeat("ef", 32)})
	cookieFor := func(base, ip, user string) string {
		b := browserFrom(t, base, ip)
		b.mustLogin(user, v.Password(t, user))
		c := b.cookieOf(deviceCookie)
		if c == "" {
			t.Fatalf("no device cookie after %s's login", user)
		}
		return c
	}
	good := cookieFor(p.URL, "127.0.0.41", "alice")
	bobs := cookieFor(p.URL, "127.0.0.42", "bob")
	elsewhere := cookieFor(otherKey.URL, "127.0.0.43", "alice")
	exhaustName(t, p.URL, "127.0.0.44", "alice", 5, 6)

	parts := strings.Split(good, ".")
	change := func(i int) string {
		q := append([]string(nil), parts...)
		b := []byte(q[i])
		if b[0] == '1' || b[0] == 'A' {
			b[0] = '2'
		} else {
			b[0] = 'A'
		}
		q[i] = string(b)
		return strings.Join(q, ".")
	}
	iat, _ := strconv.ParseInt(parts[2], 10, 64)
	for name, c := range map[string]string{
		"bob's cookie":            bobs,
		"nonce changed":           change(1),
		"issue time changed":      strings.Join([]string{parts[0], parts[1], strconv.FormatInt(iat+3600, 10), parts[3]}, "."),
		"signature changed":       change(3),
		"signature dropped":       strings.Join(parts[:3], "."),
		"signed with another key": elsewhere,
		"made up":                 "v1.AAAAAAAAAAAAAAAAAAAAAA." + parts[2] + "." + strings.Repeat("A", 43),
	} {
		r := postLogin(t, clientFrom("127.0.0.45"), p.URL, "alice", v.Password(t, "alice"), "Cookie", deviceCookie+"="+c)
		if r.StatusCode != http.StatusTooManyRequests {
			t.Errorf("%s: status %d, want 429 (no exemption)", name, r.StatusCode)
		}
	}
	// The genuine one, from the same address: in.
	r := postLogin(t, clientFrom("127.0.0.45"), p.URL, "alice", v.Password(t, "alice"), "Cookie", deviceCookie+"="+good)
	mustLanded(t, r, "alice's genuine device cookie")
}

// TestDeviceCookiePerDeviceLimit: a trusted browser has failures of its own
// (3 per window by default); past them it is a stranger again and held to
// the name's limit, while alice's other browser still gets in. The name's
// count never passes the limit + 3, below Vault's lockout (the limit + 5).
func TestDeviceCookiePerDeviceLimit(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_LOGIN_FAILURE_FLOOR": "10ms"})
	laptop, phone := browserFrom(t, p.URL, "127.0.0.51"), browserFrom(t, p.URL, "127.0.0.52")
	laptop.mustLogin("alice", v.Password(t, "alice"))
	phone.mustLogin("alice", v.Password(t, "alice"))

	exhaustName(t, p.URL, "127.0.0.53", "alice", 3, 3) // the name at 3 of 5
	for i := 0; i < 3; i++ {
		mustStatus(t, laptop.login("alice", fmt.Sprintf("typo-%d", i)), http.StatusUnauthorized, fmt.Sprintf("laptop's failure %d", i+1))
	}
	// The name is at 6, above its limit of 5; the laptop has used its 3.
	mustStatus(t, laptop.login("alice", v.Password(t, "alice")), http.StatusTooManyRequests, "laptop past its own limit")
	mustStatus(t, browserFrom(t, p.URL, "127.0.0.54").login("alice", v.Password(t, "alice")), http.StatusTooManyRequests, "browser without a cookie")
	// The phone may fail twice more (the name to 8 = 5 + 3), then no more
	// attempts reach Vault: 8 stays below Vault's threshold of 10.
	for i := 0; i < 2; i++ {
		mustStatus(t, phone.login("alice", fmt.Sprintf("phone-typo-%d", i)), http.StatusUnauthorized, fmt.Sprintf("phone's failure %d", i+1))
	}
	mustStatus(t, phone.login("alice", "phone-typo-3"), http.StatusTooManyRequests, "the name at its limit + 3")
	if !vaultLogin(t, v, "alice", v.Password(t, "alice")) {
		t.Fatal("alice is locked in Vault after 8 failures through the portal")
	}
	// The store holds a count per device under a keyed hash: nothing of
	// the cookie itself.
	db := openSQLite(t, p.DB)
	rows, err := db.Query(`SELECT key, count FROM login_attempts WHERE key LIKE 'device:%' ORDER BY count`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var counts []int
	for rows.Next() {
		var key string
		var n int
		if err := rows.Scan(&key, &n); err != nil {
			t.Fatal(err)
		}
		for _, b := range []*client{laptop, phone} {
			if nonce := strings.Split(b.cookieOf(deviceCookie), ".")[1]; strings.Contains(key, nonce) {
				t.Errorf("device count key %q holds the cookie's nonce", key)
			}
		}
		counts = append(counts, n)
	}
	if fmt.Sprint(counts) != "[2 3]" {
		t.Errorf("device counts %v, want [2 3] (the phone's refused third try is not counted)", counts)
	}
}

// TestPostgresDeviceCookieAcrossReplicas: replicas on one PostgreSQL
// database with the same session key honour each other's device cookies and
// share each device's count.
func TestPostgresDeviceCookieAcrossReplicas(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	dsn := pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
	env := map[string]string{"CERTPORTAL_DB": dsn, "CERTPORTAL_LOGIN_FAILURE_FLOOR": "10ms", "CERTPORTAL_SESSION_KEY": strings.Repeat("ab", 32)}
	first, second := startPortal(t, v, env), startPortal(t, v, env)
	alice := browserFrom(t, first.URL, "127.0.0.61")
	alice.mustLogin("alice", v.Password(t, "alice"))
	cookie := alice.cookieOf(deviceCookie)
	if cookie == "" {
		t.Fatal("no device cookie after login")
	}
	// The stranger spreads the failures over both replicas.
	exhaustName(t, first.URL, "127.0.0.62", "alice", 3, 3)
	exhaustName(t, second.URL, "127.0.0.62", "alice", 2, 3)
	withCookie := func(base, password string) *response {
		return postLogin(t, clientFrom("127.0.0.63"), base, "alice", password, "Cookie", deviceCookie+"="+cookie)
	}
	mustStatus(t, postLogin(t, clientFrom("127.0.0.64"), second.URL, "alice", v.Password(t, "alice")), http.StatusTooManyRequests, "no cookie, second replica")
	mustLanded(t, withCookie(second.URL, v.Password(t, "alice")), "the first replica's cookie on the second")

	// The device's count is shared: three failures over both replicas
	// spend it, and the name (2 + 3) is at its limit of 5: refused. Were
	// the count per replica, the second would let it in.
	exhaustName(t, first.URL, "127.0.0.62", "alice", 2, 2)
	for i, base := range []string{first.URL, second.URL, first.URL} {
		mustStatus(t, withCookie(base, fmt.Sprintf("typo-%d", i)), http.StatusUnauthorized, fmt.Sprintf("device failure %d", i+1))
	}
	mustStatus(t, withCookie(second.URL, v.Password(t, "alice")), http.StatusTooManyRequests, "device past its limit, counted over both replicas")
	if !vaultLogin(t, v, "alice", v.Password(t, "alice")) {
		t.Fatal("alice is locked in Vault")
	}
}

// TestMFADeviceCookie: with Login MFA the device cookie is set only once
// the code was accepted — not after the password, not after a wrong code —
// and it carries alice past a stranger's lockout of her name to the code
// step, which still needs the code.
func TestMFADeviceCookie(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	secret := adminEnrol(t, v, "alice", enableMFA(t, v))
	p := startPortal(t, v, map[string]string{"CERTPORTAL_LOGIN_FAILURE_FLOOR": "10ms"})
	now := time.Now()
	b := browserFrom(t, p.URL, "127.0.0.71")
	b.passwordStep("alice", v.Password(t, "alice"))
	if b.cookieOf(deviceCookie) != "" {
		t.Fatal("device cookie set after the password alone")
	}
	mustCodeRefused(t, b.codeStep("000000"), "wrong code")
	if b.cookieOf(deviceCookie) != "" {
		t.Fatal("device cookie set after a wrong code")
	}
	mustLanded(t, b.codeStep(code(t, secret, now)), "right code")
	if b.cookieOf(deviceCookie) == "" {
		t.Fatal("no device cookie after the whole login")
	}
	mustStatus(t, b.post("/logout", nil), http.StatusSeeOther, "logout")

	exhaustName(t, p.URL, "127.0.0.72", "alice", 5, 6)
	mustStatus(t, browserFrom(t, p.URL, "127.0.0.73").login("alice", v.Password(t, "alice")), http.StatusTooManyRequests, "no cookie")
	b.passwordStep("alice", v.Password(t, "alice"))
	mustCodeRefused(t, b.codeStep("000000"), "wrong code during the lockout")
	mustLanded(t, b.codeStep(code(t, secret, now.Add(30*time.Second))), "alice's browser during the lockout")
	// The completed login cleared the name's run and the device's count.
	db := openSQLite(t, p.DB)
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM login_attempts`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d login_attempts rows after the completed login (%v), want 0", n, err)
	}
}

// TestDeviceCookieHTTPS: where the session cookie is Secure with the
// __Host- prefix (browsers use HTTPS), so is the device cookie, and that is
// the name it is read under.
func TestDeviceCookieHTTPS(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_PROXY_TLS": "true", "CERTPORTAL_LOGIN_FAILURE_FLOOR": "10ms"})
	r := postLogin(t, clientFrom("127.0.0.81"), p.URL, "alice", v.Password(t, "alice"))
	mustLanded(t, r, "login")
	var value, attrs string
	for _, c := range r.Header.Values("Set-Cookie") {
		if name, rest, _ := strings.Cut(c, "="); name == "__Host-certportal_device" {
			value, _, _ = strings.Cut(rest, ";")
			attrs = c
		}
		if strings.HasPrefix(c, deviceCookie+"=") {
			t.Errorf("device cookie without the __Host- prefix over HTTPS: %q", c)
		}
	}
	if value == "" || !strings.Contains(attrs, "; Secure") || !strings.Contains(attrs, "HttpOnly") || strings.Contains(attrs, "Domain=") || !strings.Contains(attrs, "Path=/") {
		t.Fatalf("device cookie over HTTPS: %q, want __Host-, Secure, HttpOnly, Path=/, no Domain", attrs)
	}
	exhaustName(t, p.URL, "127.0.0.82", "alice", 5, 6)
	mustLanded(t, postLogin(t, clientFrom("127.0.0.83"), p.URL, "alice", v.Password(t, "alice"), "Cookie", "__Host-certportal_device="+value), "the __Host- cookie during the lockout")
}
