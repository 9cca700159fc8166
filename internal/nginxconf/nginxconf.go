// Package nginxconf renders the embedded Nginx server block that protects a path with portal-issued client certificates.
package nginxconf

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"unicode"
)

// Defaults applied to empty Params fields.
const (
	DefaultListen     = "443"
	DefaultSecurePath = "/secure"
	DefaultVerify     = VerifyOptional
)

// Values of Params.Verify, the argument of nginx's ssl_verify_client.
const (
	// VerifyOptional asks for a certificate on every connection but admits browsers
	// without one; the protected locations answer 403 to them.
	VerifyOptional = "optional"
	// VerifyOn refuses every request without a valid certificate, on every path.
	VerifyOn = "on"
)

// Params describes one protected server. Everything ends up unquoted in an nginx
// configuration file, so Validate is strict about characters nginx gives meaning to.
type Params struct {
	// ServerName is a single nginx server_name, e.g. "app.example.com".
	ServerName string
	// Listen is a port ("443") or host:port ("127.0.0.1:8443", "[::1]:443").
	Listen string
	// ServerCert and ServerKey are the TLS server certificate (with its chain) and key.
	ServerCert string
	ServerKey  string
	// ClientCA is the portal's issuing CA chain: exactly the CAs whose certificates
	// are admitted.
	ClientCA string
	// CRL holds the CRLs of every CA in ClientCA; nginx checks the whole chain.
	CRL string
	// SecurePath is the protected location prefix; its whoami page is SecurePath+"/whoami".
	SecurePath string
	// Verify is VerifyOptional or VerifyOn.
	Verify string
	// Upstream, when set, receives the requests with the verified identity in headers,
	// e.g. "http://127.0.0.1:9000". Without it nginx answers itself.
	Upstream string
	// PortalURL, when set, is where the pages for a refused certificate and the
	// whoami page send the user for a new certificate, e.g. https://certs.example.com/.
	PortalURL string
	// SkipFileChecks leaves out the readability checks of the four files, for
	// rendering a configuration meant for another machine.
	SkipFileChecks bool
}

// WhoamiPath is the page that shows which certificate the browser presented.
func (p Params) WhoamiPath() string {
	return p.withDefaults().SecurePath + "/whoami"
}

// SecurePathPattern is SecurePath as a PCRE pattern for the case-blind
// check of the open location (Validate allows only letters, digits and
// "._~-", of which "." is the one to escape). nginx's ~* folds ASCII only,
// while a case-insensitive backend may also fold the non-ASCII letters
// whose upper or lower case is an ASCII one: ſ (U+017F) to s, K (U+212A,
// Kelvin) to k, ı (U+0131) and İ (U+0130) to i. Each of those ASCII letters
// also matches the UTF-8 bytes of its non-ASCII kin (nginx runs PCRE on
// bytes: (*UTF) would make every URI that is not UTF-8 a 500).
func (p Params) SecurePathPattern() string {
	kin := map[rune]string{'s': `\xC5\xBF`, 'k': `\xE2\x84\xAA`, 'i': `\xC4\xB1|\xC4\xB0`}
	var b strings.Builder
	for _, r := range regexp.QuoteMeta(p.withDefaults().SecurePath) {
		if k, ok := kin[unicode.ToLower(r)]; ok {
			b.WriteString("(?:" + string(r) + "|" + k + ")")
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// VerifyOptional reports whether requests without a certificate reach the server.
func (p Params) VerifyOptional() bool {
	return p.withDefaults().Verify == VerifyOptional
}

func (p Params) withDefaults() Params {
	if p.Listen == "" {
		p.Listen = DefaultListen
	}
	if p.SecurePath == "" {
		p.SecurePath = DefaultSecurePath
	}
	if p.Verify == "" {
		p.Verify = DefaultVerify
	}
	return p
}

var (
	// A single name: nginx would read a space as a second name and a quote, semicolon or
	// brace as syntax. Regex names (~...) are left out because they can hold anything.
	serverNameRE = regexp.MustCompile(`^[A-Za-z0-9_*.-]+$`)
	listenHostRE = regexp.MustCompile(`^(\*|[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])$`)
	// Plain segments only: nginx compares location prefixes with the normalised URI, so
	// a prefix holding "//", "." or ".." segments or escapes would never match, and
	// other characters could be read as syntax.
	securePathRE = regexp.MustCompile(`^(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+$`)
)

// unsafeChars are those that end, quote, comment or interpolate an nginx directive
// argument. "$" matters in file paths too: since nginx 1.15.9 a variable in
// ssl_certificate is expanded per handshake.
const unsafeChars = " \t\r\n\"';{}$#\\`"

// Validate reports every problem with p, one per line. Empty Listen, SecurePath and
// Verify take their defaults.
func (p Params) Validate() error {
	p = p.withDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch {
	case p.ServerName == "":
		add("server name is required")
	case len(p.ServerName) > 253 || !serverNameRE.MatchString(p.ServerName):
		add("server name %q: must be one host name (letters, digits, '.', '-', '_', '*'), without spaces, quotes, semicolons or braces", p.ServerName)
	case !validWildcard(p.ServerName):
		add("server name %q: a wildcard must be a whole first or last label, as in *.example.com", p.ServerName)
	}

	if err := validateListen(p.Listen); err != nil {
		add("listen %q: %w", p.Listen, err)
	}

	for _, f := range []struct{ name, path string }{
		{"server certificate", p.ServerCert},
		{"server key", p.ServerKey},
		{"client CA", p.ClientCA},
		{"CRL", p.CRL},
	} {
		if err := validateFile(f.path, !p.SkipFileChecks); err != nil {
			add("%s: %w", f.name, err)
		}
	}

	if p.SecurePath == "/" {
		add("secure path %q: must not be the whole site (use verify %q to protect every path)", p.SecurePath, VerifyOn)
	} else if !securePathRE.MatchString(p.SecurePath) {
		add("secure path %q: must start with / and hold only letters, digits and '.', '_', '~', '-' between single slashes, no segment starting with '.', no trailing slash", p.SecurePath)
	}

	if p.Verify != VerifyOptional && p.Verify != VerifyOn {
		add("verify %q: must be %q or %q", p.Verify, VerifyOptional, VerifyOn)
	}

	if p.PortalURL != "" {
		if err := validatePortalURL(p.PortalURL); err != nil {
			add("portal URL %q: %w", p.PortalURL, err)
		}
	}

	if p.Upstream != "" {
		if err := validateUpstream(p.Upstream); err != nil {
			add("upstream %q: %w", p.Upstream, err)
		}
	}
	return errors.Join(errs...)
}

func validateListen(s string) error {
	port := s
	if strings.Contains(s, ":") {
		host, pt, err := net.SplitHostPort(s)
		if err != nil {
			return errors.New("must be a port or host:port")
		}
		if host == "" || !listenHostRE.MatchString(bracketIPv6(s, host)) {
			return errors.New("host must be *, a host name or an IP address")
		}
		if strings.HasPrefix(s, "[") && net.ParseIP(host) == nil {
			return errors.New("bracketed host must be an IPv6 address")
		}
		port = pt
	}
	n, err := strconv.Atoi(port)
	switch {
	case err != nil && port == s:
		return errors.New("must be a port or host:port")
	case err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n):
		return errors.New("port must be a number from 1 to 65535")
	}
	return nil
}

// bracketIPv6 restores the brackets SplitHostPort removed, so the host is matched as written.
func bracketIPv6(hostport, host string) string {
	if strings.HasPrefix(hostport, "[") {
		return "[" + host + "]"
	}
	return host
}

func validateFile(path string, checkReadable bool) error {
	switch {
	case path == "":
		return errors.New("path is required")
	case !filepath.IsAbs(path):
		// nginx resolves relative paths against its own prefix, not the caller's
		// directory, so a relative path would name a different file.
		return fmt.Errorf("path %q must be absolute", path)
	case strings.ContainsAny(path, unsafeChars) || hasControl(path):
		return fmt.Errorf("path %q must not contain whitespace, quotes, or any of ;{}$#\\`", path)
	}
	if !checkReadable {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot read: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}

func validateUpstream(s string) error {
	if strings.ContainsAny(s, unsafeChars) || hasControl(s) {
		return errors.New("must not contain whitespace, quotes, or any of ;{}$#\\`")
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("must be a URL such as http://127.0.0.1:9000")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("scheme must be http or https")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("must name a host, e.g. http://127.0.0.1:9000")
	case u.User != nil:
		return errors.New("must not carry credentials")
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		// With a URI part, proxy_pass replaces the matched location prefix, so
		// /secure/x would reach the upstream under another path.
		return errors.New("must be scheme://host[:port] without a path")
	}
	return nil
}

// validatePortalURL: the URL is written into nginx strings (whoami's text, the
// error pages' HTML in single quotes), so it must be a plain http(s) URL
// without anything nginx or HTML would read as syntax.
func validatePortalURL(s string) error {
	if strings.ContainsAny(s, unsafeChars+"<>&") || hasControl(s) {
		return errors.New("must not contain whitespace, quotes, <, >, & or any of ;{}$#\\`")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an http(s) URL such as https://certs.example.com/")
	}
	if u.User != nil {
		return errors.New("must not carry credentials")
	}
	return nil
}

// errorPage is the text of one page for a refused certificate, in English and
// Korean: nginx cannot choose a language, so the page carries both.
type errorPage struct {
	Title, Text, Link       string
	TitleKO, TextKO, LinkKO string
	PortalURL               string
}

// ErrorPage returns the page for kind "invalid" (revoked, expired or not the
// portal's) or "missing" (no certificate presented).
func (p Params) ErrorPage(kind string) errorPage {
	e := errorPage{PortalURL: p.PortalURL, Link: "Get a new certificate from the certificate portal", LinkKO: "인증서 포털에서 새 인증서 받기"}
	switch kind {
	case "invalid":
		e.Title, e.TitleKO = "Your certificate is no longer valid", "인증서가 더 이상 유효하지 않습니다"
		e.Text = "The certificate your browser presented was revoked, has expired or was not issued by the company certificate portal. Get a new one, install it, then close every browser window and try again."
		e.TextKO = "브라우저가 제시한 인증서는 폐기되었거나 만료되었거나 회사 인증서 포털에서 발급되지 않았습니다. 새 인증서를 받아 설치한 뒤 브라우저 창을 모두 닫고 다시 시도하세요."
	default:
		e.Title, e.TitleKO = "This page needs your company certificate", "이 페이지에는 회사 인증서가 필요합니다"
		e.Text = "Your browser did not present a certificate. Get one from the certificate portal and install it; if you have one, close every browser window, open this page again and choose it when asked."
		e.TextKO = "브라우저가 인증서를 제시하지 않았습니다. 인증서 포털에서 인증서를 받아 설치하세요. 이미 있다면 브라우저 창을 모두 닫고 이 페이지를 다시 연 뒤, 물으면 그 인증서를 고르세요."
	}
	if p.PortalURL == "" {
		e.Text += " Ask the helpdesk where the portal is."
		e.TextKO += " 포털 주소는 헬프데스크에 문의하세요."
	}
	return e
}

// validWildcard mirrors what nginx accepts, so the mistake is reported here rather than
// by nginx -t on the target machine.
func validWildcard(name string) bool {
	switch strings.Count(name, "*") {
	case 0:
		return true
	case 1:
		return (strings.HasPrefix(name, "*.") && len(name) > 2) ||
			(strings.HasSuffix(name, ".*") && len(name) > 2)
	default:
		return false
	}
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

//go:embed nginx.conf.tmpl
var templateText string

// parsedTemplate parses the embedded template once; it is compiled into the binary, so a
// parse error is a programming error that the package tests catch.
var parsedTemplate = sync.OnceValues(func() (*template.Template, error) {
	return template.New("nginx.conf").Option("missingkey=error").Parse(templateText)
})

// Render validates p and writes the server block to w. Nothing is written when p is
// invalid or rendering fails, so a caller never emits half a configuration.
func Render(w io.Writer, p Params) error {
	if err := p.Validate(); err != nil {
		return err
	}
	t, err := parsedTemplate()
	if err != nil {
		return fmt.Errorf("parse nginx template: %w", err)
	}
	p = p.withDefaults()
	// An "/" upstream path is equivalent to none but would change proxy_pass semantics.
	p.Upstream = strings.TrimSuffix(p.Upstream, "/")
	var buf bytes.Buffer
	if err := t.Execute(&buf, p); err != nil {
		return fmt.Errorf("render nginx template: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write nginx config: %w", err)
	}
	return nil
}
