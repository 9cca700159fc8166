package ui

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/portal"
)

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	if id := identityFrom(r.Context()); id != nil {
		http.Redirect(w, r, landing(id), http.StatusSeeOther)
		return
	}
	p := s.newPage(r, "login.title")
	p.AccountName = s.accountName(p)
	if r.URL.Query().Get("logged_out") == "1" {
		p.Notice = "login.logged_out"
	}
	p.Next = safeNext(r.URL.Query().Get("next"))
	s.render(w, r, http.StatusOK, "login", p)
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !s.parseForm(w, r) {
		return
	}
	username := r.PostFormValue("username")
	id, pending, err := s.Service.LoginDevice(r.Context(), username, r.PostFormValue("password"), s.deviceToken(r))
	if err != nil {
		s.loginAgain(w, r, username, err)
		return
	}
	if pending != nil && pending.NewKey != nil {
		// Trust on first use: the secret Vault just generated, once,
		// with the code form that finishes this login.
		if !s.keepPending(w, r, pending, pending.NewKey) {
			return
		}
		s.Logger.InfoContext(r.Context(), "login enrols a second factor (trust on first use)", "user", pending.Username,
			"client_ip", portal.RequestInfoFrom(r.Context()).ClientIP)
		s.renderScan(w, r, pending.Username, pending.NewKey, "enrol.tofu_intro")
		return
	}
	if pending != nil {
		s.beginMFA(w, r, pending)
		return
	}
	s.startSession(w, r, id, "")
}

// loginAgain answers a failed password step with the login form again,
// the username kept (never the password), for the failures the user
// retries from it: refused credentials (401), too many attempts (429), and
// Vault or the store unavailable (503, with the reference the 5xx pages
// quote), where retyping the name after an outage would be the user's
// chore for the portal's fault. Anything else is the error page.
func (s *Server) loginAgain(w http.ResponseWriter, r *http.Request, username string, err error) {
	var pe *portal.Error
	if !errors.As(err, &pe) {
		s.fail(w, r, err)
		return
	}
	switch pe.Code {
	case portal.EUnauthorized, portal.ETooMany:
		// No log line here: the username as typed may be a password.
		// The service logs failures under the name it records.
		setRetryAfter(w, pe)
	case portal.EUnavailable:
		// The cause is the outage's (Vault's or the store's, classified:
		// no request data in it), logged with the request id the page
		// quotes, as the error page would.
		s.logFailure(w, r, err)
	default:
		s.fail(w, r, err)
		return
	}
	p := s.newPage(r, "login.title")
	p.Error = pe.Message
	if p.ErrorWait = waitMinutes(pe); p.ErrorWait > 0 && pe.Code == portal.ETooMany {
		p.Error += "_wait"
	} else {
		p.ErrorWait = 0
	}
	p.Username = username
	p.AccountName = s.accountName(p)
	// The username was most likely right: the cursor goes where
	// the retyping starts.
	p.FocusPass = username != ""
	p.Next = safeNext(r.PostFormValue("next"))
	s.render(w, r, statusFor(pe.Code), "login", p)
}

// startSession makes the request's session the logged-in session of id
// (its Vault login is complete) and sends the user to their landing page.
// flash, a catalog key or "", is a notice for the first page the new
// session shows (takeFlash).
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, id *portal.Identity, flash string) {
	sess := sessionFrom(r.Context())
	// Where the user was going: the login form's next, or the one the
	// pre-login session kept across the code step.
	dest := safeNext(r.PostFormValue("next"))
	if kept, _ := sess.Values[valNext].(string); dest == "" {
		dest = safeNext(kept)
	}
	if dest == "" {
		dest = landing(id)
	}
	// A fresh id at login: an id planted before (session fixation) is dropped.
	if err := s.Sessions.Renew(r.Context(), sess); err != nil {
		s.revokeQuietly(r, id)
		s.fail(w, r, portal.Errorf(portal.EUnavailable, "error.internal", "renew session: %w", err))
		return
	}
	s.forgetLoginEnd(w, r)
	roles := make([]string, len(id.Roles))
	for i, role := range id.Roles {
		roles[i] = string(role)
	}
	sess.Values[valUser] = id.Username
	sess.Values[valToken] = id.Token
	sess.Values[valRoles] = roles
	sess.Values[valExp] = id.ExpiresAt
	sess.Values[valChecked] = s.Now() // the login was Vault's word on the token
	// When the user last proved themselves (step-up counts from it).
	sess.Values[valAuthAt] = s.Now()
	if id.MFA {
		sess.Values[valMFA] = "totp" // the session keeps strings and times only
	}
	if flash != "" {
		sess.Values[valFlash] = flash
	}
	s.capCookieLife(sess, id)
	if err := sess.Save(r, w); err != nil {
		s.revokeQuietly(r, id)
		s.fail(w, r, portal.Errorf(portal.EUnavailable, "error.internal", "save session: %w", err))
		return
	}
	// The whole login (password, and code when MFA applies) succeeded:
	// this browser is the user's from now on (device.go in portal).
	s.setDeviceToken(w, id.Username)
	// Reminders are sent in the language the user last used the portal in.
	s.rememberLanguage(r, id.Username, i18n.FromRequest(r))
	s.Logger.InfoContext(r.Context(), "login", "user", id.Username, "roles", roles, "client_ip", portal.RequestInfoFrom(r.Context()).ClientIP, "peer", r.RemoteAddr)
	if s.needsOwnNavigation(dest) {
		// The destination does work (an export, a look-up recorded as an
		// event) and the login form may have come from another site's link
		// (/login?next=/audit/export…); the redirect after the login would
		// be the portal's own navigation. A click on this page is.
		s.continuePage(w, r, dest)
		return
	}
	http.Redirect(w, r, dest, http.StatusSeeOther)
}

// deviceCookieName is the device token's cookie: host-only and Secure
// (__Host-) wherever the session cookie is.
func (s *Server) deviceCookieName() string {
	if s.Secure {
		return "__Host-certportal_device"
	}
	return "certportal_device"
}

// deviceToken is the device token the browser presented, "" for none.
func (s *Server) deviceToken(r *http.Request) string {
	c, err := r.Cookie(s.deviceCookieName())
	if err != nil {
		return ""
	}
	return c.Value
}

// setDeviceToken gives the browser a fresh device token for username. It
// outlives sessions and logouts on purpose: it says "this browser logged in
// as this user before", which is what lets the owner past a stranger's
// lockout. It is HttpOnly (no script reads it) and SameSite=Lax like the
// session cookie.
func (s *Server) setDeviceToken(w http.ResponseWriter, username string) {
	tok := s.Service.DeviceToken(username)
	if tok == "" {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: s.deviceCookieName(), Value: tok, Path: "/",
		MaxAge: int(s.Service.DeviceTokenTTL() / time.Second), HttpOnly: true, Secure: s.Secure, SameSite: http.SameSiteLaxMode})
}

// valNext keeps the after-login destination in a pre-login (code step)
// session.
const valNext = "next"

// loginURL is the login page that returns to target afterwards.
func loginURL(target string) string {
	if target = safeNext(target); target == "" || target == "/" {
		return "/login"
	}
	return "/login?next=" + url.QueryEscape(target)
}

// safeNext returns target if it is a path on this portal, "" otherwise:
// an after-login redirect must never leave the site ("//evil.example",
// "/\\evil.example", "https://…") or carry anything but printable ASCII (a
// request URI is already escaped), and the
// login pages themselves are no destination.
func safeNext(target string) string {
	if target == "" || len(target) > 1024 || target[0] != '/' {
		return ""
	}
	if strings.HasPrefix(target, "//") || strings.HasPrefix(target, "/\\") {
		return ""
	}
	for _, c := range target {
		if c < 0x21 || c > 0x7e || c == '\\' {
			return ""
		}
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return ""
	}
	if u.Path == "/login" || strings.HasPrefix(u.Path, "/login/") || u.Path == "/logout" {
		return ""
	}
	// Only a path in the one form the browser will ask for it: the
	// redirect cleans dot segments and the slash middleware drops a
	// trailing slash, while needsOwnNavigation and the router read the
	// path as written. /audit/./export must not pass as something that is
	// not the export.
	raw, _, _ := strings.Cut(target, "?")
	if u.Fragment != "" || strings.Contains(target, "#") || raw != (&url.URL{Path: u.Path}).EscapedPath() || path.Clean(u.Path) != u.Path {
		return ""
	}
	return target
}

// revokeQuietly gives back a token whose session could not be kept, so that
// no valid token exists that no session knows of.
func (s *Server) revokeQuietly(r *http.Request, id *portal.Identity) {
	// Not cancelled with the request: a client that hung up must not leave
	// the token valid.
	if err := s.Service.Logout(context.WithoutCancel(r.Context()), id); err != nil {
		s.Logger.WarnContext(r.Context(), "revoke orphaned token", "user", id.Username, "err", err)
	}
}

// accountName is what the login page calls the account: the operator's
// name for it, or "your company account" in the page's language.
func (s *Server) accountName(p *page) string {
	if s.AccountName != "" {
		return s.AccountName
	}
	return i18n.T(p.Lang, "login.account_default")
}
