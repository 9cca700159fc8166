package ui

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/sessions"

	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/vault"
)

// The pre-login session's values: a password Vault accepted, waiting for a
// TOTP code. They never include a token, so identityFromSession sees no
// login and every other route treats the session as logged out.
const (
	valPendingUser    = "mfa_user"
	valPendingReq     = "mfa_request"
	valPendingMethods = "mfa_methods"
	valPendingStarted = "mfa_started"
	valPendingDevice  = "mfa_device" // the device count's store key, never the token
	// valScanHash: a hash of the secret a scan page showed (its otpauth
	// URL), never the secret: a wrong code may show that page again from
	// what the browser sends back, and only from that.
	valScanHash = "mfa_scan"
)

// scanHash is what valScanHash holds for a scan page's key.
func scanHash(keyURL string) string {
	h := sha256.Sum256([]byte("certportal-scan:" + keyURL))
	return hex.EncodeToString(h[:])
}

// beginMFA keeps the pending login in a fresh pre-login session and sends
// the browser to the code page. The request id stays on the server.
func (s *Server) beginMFA(w http.ResponseWriter, r *http.Request, p *portal.PendingLogin) {
	if !s.keepPending(w, r, p) {
		return
	}
	s.Logger.InfoContext(r.Context(), "login needs a code", "user", p.Username, "client_ip", portal.RequestInfoFrom(r.Context()).ClientIP)
	http.Redirect(w, r, "/login/mfa", http.StatusSeeOther)
}

// keepPending makes the request's session a fresh pre-login session
// holding p; false when it failed (the error page is written).
func (s *Server) keepPending(w http.ResponseWriter, r *http.Request, p *portal.PendingLogin, scan ...*vault.TOTPKey) bool {
	sess := sessionFrom(r.Context())
	if err := s.Sessions.Renew(r.Context(), sess); err != nil {
		s.fail(w, r, portal.Errorf(portal.EUnavailable, "error.internal", "renew session: %w", err))
		return false
	}
	delete(sess.Values, valScanHash)
	if len(scan) > 0 && scan[0] != nil {
		sess.Values[valScanHash] = scanHash(scan[0].URL)
	}
	s.forgetLoginEnd(w, r) // a new login has begun
	if next := safeNext(r.PostFormValue("next")); next != "" {
		sess.Values[valNext] = next
	}
	sess.Values[valPendingUser] = p.Username
	sess.Values[valPendingReq] = p.RequestID
	sess.Values[valPendingMethods] = p.MethodIDs
	sess.Values[valPendingStarted] = p.Started
	if p.DeviceKey != "" {
		sess.Values[valPendingDevice] = p.DeviceKey
	}
	// The pre-login session lives no longer than Vault's pending login.
	if max := int(s.Service.Options().MFAPending / time.Second); max < sess.Options.MaxAge {
		sess.Options.MaxAge = max
	}
	if err := sess.Save(r, w); err != nil {
		s.fail(w, r, portal.Errorf(portal.EUnavailable, "error.internal", "save session: %w", err))
		return false
	}
	return true
}

func pendingFromSession(sess *sessions.Session) *portal.PendingLogin {
	user, _ := sess.Values[valPendingUser].(string)
	req, _ := sess.Values[valPendingReq].(string)
	methods, _ := sess.Values[valPendingMethods].([]string)
	started, _ := sess.Values[valPendingStarted].(time.Time)
	device, _ := sess.Values[valPendingDevice].(string)
	if user == "" || req == "" || len(methods) == 0 {
		return nil
	}
	return &portal.PendingLogin{Username: user, RequestID: req, MethodIDs: methods, Started: started, DeviceKey: device}
}

func (s *Server) loginMFAForm(w http.ResponseWriter, r *http.Request) {
	if id := identityFrom(r.Context()); id != nil {
		http.Redirect(w, r, landing(id), http.StatusSeeOther)
		return
	}
	p := pendingFromSession(sessionFrom(r.Context()))
	if p == nil || s.Service.PendingExpired(p) {
		if end := s.loginEnd(r); end != "" {
			// How this browser's code step ended, again: that page's
			// language switch links here.
			s.renderLoginEnd(w, r, end, "")
			return
		}
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	pg := s.newPage(r, "login.mfa_title")
	pg.Username = p.Username
	s.render(w, r, http.StatusOK, "login_mfa", pg)
}

func (s *Server) loginMFA(w http.ResponseWriter, r *http.Request) {
	if !s.parseForm(w, r) {
		return
	}
	sess := sessionFrom(r.Context())
	p := pendingFromSession(sess)
	if p == nil {
		if id := identityFrom(r.Context()); id != nil {
			// The login was completed (a second click on the button, Back
			// and send again): nothing a code could finish, and nothing
			// wrong either. Where the login would have led.
			http.Redirect(w, r, landing(id), http.StatusSeeOther)
			return
		}
		// No password step in this session: most often the pre-login
		// session ended with Vault's window (its cookie and row live no
		// longer), so the code came too late. Only a new login helps:
		// the login form, saying so, not the error page's "session
		// expired" and a link to the start page.
		s.endLogin(w, r, "error.mfa_expired", "")
		return
	}
	id, err := s.Service.CompleteLogin(r.Context(), p, r.PostFormValue("code"))
	if err == nil {
		flash := ""
		if sess.Values[valScanHash] != nil {
			// The code came after a scan page: the app is set up now,
			// which the page the login leads to says once.
			flash = "notice.mfa_enrolled"
		}
		s.startSession(w, r, id, flash)
		return
	}
	var pe *portal.Error
	if !errors.As(err, &pe) {
		s.fail(w, r, err)
		return
	}
	s.Logger.InfoContext(r.Context(), "login code refused", "user", p.Username, "code", string(pe.Code), "reason", pe.Message,
		"client_ip", portal.RequestInfoFrom(r.Context()).ClientIP)
	switch {
	case pe.Code == portal.ETooMany || pe.Message == "error.mfa_code_rejected" || pe.Code == portal.EUnavailable:
		// Vault keeps the pending login: the user may try again, from
		// the code form (after an outage too: the 503 form quotes the
		// reference, and its cause is logged as on the error page).
		if pe.Code == portal.EUnavailable {
			s.logFailure(w, r, err)
		} else {
			setRetryAfter(w, pe)
		}
		if s.scanAgain(w, r, sess, p.Username, pe) {
			return
		}
		pg := s.newPage(r, "login.mfa_title")
		pg.Error = pe.Message
		if pg.ErrorWait = waitMinutes(pe); pg.ErrorWait > 0 && pe.Code == portal.ETooMany {
			pg.Error += "_wait"
		} else {
			pg.ErrorWait = 0
		}
		pg.Username = p.Username
		s.render(w, r, statusFor(pe.Code), "login_mfa", pg)
		return
	}
	// Expired, not enrolled, no portal access: the login starts over.
	if derr := s.Sessions.Drop(r, w, sess); derr != nil {
		s.fail(w, r, portal.Errorf(portal.EUnavailable, "error.internal", "drop session: %w", derr))
		return
	}
	switch pe.Message {
	case "error.mfa_expired", "error.mfa_not_enrolled":
		s.endLogin(w, r, pe.Message, p.Username)
	default:
		s.fail(w, r, err)
	}
}

// scanAgain answers a refused code from a scan page with that page again,
// its key as the browser sent it back (the QR code drawn anew from it),
// when it is the one this session's scan page showed (valScanHash): only
// the otpauth URL travels, so the post stays far below any body limit. A
// user whose app did
// not take the account, or who typed the key wrong, can try again instead
// of being left with a code page no code of theirs can pass. false when
// the code did not come from such a page.
func (s *Server) scanAgain(w http.ResponseWriter, r *http.Request, sess *sessions.Session, username string, pe *portal.Error) bool {
	want, _ := sess.Values[valScanHash].(string)
	keyURL := r.PostFormValue("scan_key")
	if want == "" || keyURL == "" || subtle.ConstantTimeCompare([]byte(scanHash(keyURL)), []byte(want)) != 1 {
		return false
	}
	img, err := qrPNG(keyURL)
	if err != nil {
		s.Logger.WarnContext(r.Context(), "draw the QR code again", "err", err)
		return false
	}
	intro := "enrol.scan_intro"
	if r.PostFormValue("scan_intro") == "enrol.tofu_intro" {
		intro = "enrol.tofu_intro"
	}
	s.renderScanStatus(w, r, statusFor(pe.Code), username, &vault.TOTPKey{URL: keyURL, PNG: img}, intro, pe)
	return true
}

// loginEnds are the ways a code step can end for good (the login starts
// over), each as the cookie value that remembers it.
var loginEnds = map[string]string{
	"error.mfa_expired":      "expired",
	"error.mfa_not_enrolled": "not_enrolled",
}

// loginEndTTL is how long GET /login/mfa shows again how the code step
// ended: time to read it and switch language, not to come back later.
const loginEndTTL = 10 * time.Minute

// loginEndCookie remembers how this browser's code step ended. The page
// that says so is the answer to a POST, and its language switch links to
// GET /login/mfa, which finds no pending login any more: without this it
// answered with a blank login page, the message lost. The cookie holds
// one of two fixed words and no name; only the portal's own answer sets
// it (a link cannot), so the page never tells someone a thing nobody told
// their browser. Host-only and Secure (__Host-) wherever the session
// cookie is.
func (s *Server) loginEndCookie() string {
	if s.Secure {
		return "__Host-certportal_login_end"
	}
	return "certportal_login_end"
}

// endLogin answers a code step that cannot go on with the page that says
// why, and remembers it for the page's language switch.
func (s *Server) endLogin(w http.ResponseWriter, r *http.Request, key, username string) {
	http.SetCookie(w, &http.Cookie{Name: s.loginEndCookie(), Value: loginEnds[key], Path: "/",
		MaxAge: int(loginEndTTL / time.Second), HttpOnly: true, Secure: s.Secure, SameSite: http.SameSiteLaxMode})
	s.renderLoginEnd(w, r, key, username)
}

// forgetLoginEnd drops the remembered end: a new login has begun.
func (s *Server) forgetLoginEnd(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(s.loginEndCookie()); err == nil {
		http.SetCookie(w, &http.Cookie{Name: s.loginEndCookie(), Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, Secure: s.Secure, SameSite: http.SameSiteLaxMode})
	}
}

// loginEnd is the catalog key of the end the browser's cookie remembers,
// "" for none.
func (s *Server) loginEnd(r *http.Request) string {
	c, err := r.Cookie(s.loginEndCookie())
	if err != nil {
		return ""
	}
	for key, v := range loginEnds {
		if c.Value == v {
			return key
		}
	}
	return ""
}

// renderLoginEnd shows how a code step ended: expired, the login form
// saying so (the name kept when known); not enrolled, "ask the helpdesk".
func (s *Server) renderLoginEnd(w http.ResponseWriter, r *http.Request, key, username string) {
	if key == "error.mfa_not_enrolled" {
		pg := s.newPage(r, "login.mfa_enrol_title")
		pg.Username = username
		s.render(w, r, http.StatusForbidden, "login_enrol_needed", pg)
		return
	}
	pg := s.newPage(r, "login.title")
	pg.Error = key
	pg.Username = username
	pg.AccountName = s.accountName(pg)
	pg.FocusPass = username != ""
	s.render(w, r, http.StatusUnauthorized, "login", pg)
}
