package ui

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/sessions"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/store"
)

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyIdentity
	keySession
	keyLogInfo
)

// logInfo lets inner middleware tell the request logger who the user was.
type logInfo struct{ user string }

func identityFrom(ctx context.Context) *portal.Identity {
	id, _ := ctx.Value(keyIdentity).(*portal.Identity)
	return id
}

func sessionFrom(ctx context.Context) *sessions.Session {
	s, _ := ctx.Value(keySession).(*sessions.Session)
	return s
}

// RequestID returns the request's id (also sent as X-Request-Id).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(keyRequestID).(string)
	return id
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &startedWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.ErrorContext(r.Context(), "panic", "request_id", RequestID(r.Context()), "panic", v, "stack", string(debug.Stack()))
				if sw.started {
					// Part of the answer is out (a download, an export):
					// an error page after it would be taken for its end.
					// Cutting the connection tells the client it is broken.
					panic(http.ErrAbortHandler)
				}
				// The headers the handler meant for its own answer must
				// not describe the error page: it is no attachment, and
				// nothing says when to come back (as renderFailed).
				for _, h := range []string{"Content-Disposition", "Content-Length", "Content-Encoding", "ETag", "Last-Modified", "Retry-After"} {
					w.Header().Del(h)
				}
				s.failStatus(w, r, http.StatusInternalServerError, "error.internal")
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// startedWriter records whether the response has begun (its status or a
// byte of its body was sent), so the recoverer knows whether an error page
// can still replace it.
type startedWriter struct {
	http.ResponseWriter
	started bool
}

func (w *startedWriter) WriteHeader(code int) {
	if code >= 200 { // 1xx are interim: the answer is still to come
		w.started = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *startedWriter) Write(b []byte) (int, error) {
	w.started = true
	return w.ResponseWriter.Write(b)
}

// FlushError sends the headers if nothing else has (http.ResponseController
// finds it before Unwrap): the answer has begun.
func (w *startedWriter) FlushError() error {
	w.started = true
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection's other
// controls (deadlines).
func (w *startedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		id := hex.EncodeToString(b)
		w.Header().Set("X-Request-Id", id)
		ip := clientIP(r, s.TrustedProxies)
		if r.Header.Get("X-Forwarded-For") != "" && !peerTrusted(r, s.TrustedProxies) {
			s.warnUntrustedProxy(r)
		}
		ctx := context.WithValue(r.Context(), keyRequestID, id)
		ctx = portal.WithRequestInfo(ctx, portal.RequestInfo{ClientIP: ip, UserAgent: r.UserAgent(), RequestID: id})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests logs method, path, status and timing — never the query string,
// form values or headers, which may carry secrets.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		info := &logInfo{}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), keyLogInfo, info)))
		took := time.Since(start)
		route := ""
		if rc := chi.RouteContext(r.Context()); rc != nil {
			route = rc.RoutePattern()
		}
		code := sw.status
		if code == 0 {
			code = http.StatusOK // nothing written: net/http sends 200
		}
		s.Metrics.Request(r.Method, route, code, took)
		// The path is the client's choice: bounded and escaped like the
		// trail's values, so one request cannot add kilobytes to the log.
		s.Logger.InfoContext(r.Context(), "http", "request_id", RequestID(r.Context()), "method", r.Method,
			"path", audit.Clean(r.URL.Path, audit.MaxField), "status", sw.status, "bytes", sw.bytes, "user", info.user,
			"duration_ms", float64(took.Microseconds())/1000)
	})
}

// The Content-Security-Policy of every response, and of the pages that
// offer "create the key on this device": those alone may compile
// WebAssembly (the device-key module). The pages work without script; the
// one they load (web/static/portal.js) is same-origin, and fetches only
// from this origin, so the CSP allows exactly that.
const (
	cspScript     = "default-src 'none'; script-src 'self'"
	cspRest       = "; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	cspBase       = cspScript + cspRest
	cspDeviceKeys = cspScript + " 'wasm-unsafe-eval'" + cspRest
	// cspScan is the QR code page's (renderScan).
	cspScan = cspScript + "; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

// secureHeaders sets the headers every response carries; render widens
// the CSP to cspDeviceKeys for a page that loads the device-key module.
func (s *Server) secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", cspBase)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if s.Secure {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.MaxBodyBytes {
			s.failStatus(w, r, http.StatusRequestEntityTooLarge, "error.too_large")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

// parseForm parses a posted form and renders 413 or 400 itself on failure.
func (s *Server) parseForm(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.failStatus(w, r, http.StatusRequestEntityTooLarge, "error.too_large")
		} else {
			s.failStatus(w, r, http.StatusBadRequest, "error.bad_request")
		}
		return false
	}
	return true
}

// language remembers an explicit ?lang= choice in a cookie.
func (s *Server) language(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l, ok := i18n.Parse(r.URL.Query().Get("lang")); ok {
			http.SetCookie(w, &http.Cookie{Name: i18n.CookieName, Value: string(l), Path: "/", MaxAge: 365 * 24 * 3600,
				HttpOnly: true, Secure: s.Secure, SameSite: http.SameSiteLaxMode})
		}
		next.ServeHTTP(w, r)
	})
}

// crossOrigin refuses state-changing requests from other origins, using the
// browser's Sec-Fetch-Site and Origin headers (Go's CrossOriginProtection).
func (s *Server) crossOrigin(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.refuseCrossOrigin(w, r)
	}))
	return cop.Handler(next)
}

func (s *Server) refuseCrossOrigin(w http.ResponseWriter, r *http.Request) {
	s.refuseRequest(w, r, "cross-origin request refused", "error.cross_origin")
}

// refuseEmbedded answers a GET that does work when another page asked for
// it (an image, a fetch) rather than the user opening it.
func (s *Server) refuseEmbedded(w http.ResponseWriter, r *http.Request) {
	s.refuseRequest(w, r, "embedded request refused", "error.embedded")
}

// refuseRequest logs a request refused by its Fetch metadata or origin as
// what, with the headers that decided, and answers 403 with key.
func (s *Server) refuseRequest(w http.ResponseWriter, r *http.Request, what, key string) {
	s.Logger.WarnContext(r.Context(), what, "path", audit.Clean(r.URL.Path, audit.MaxField),
		"origin", audit.Clean(r.Header.Get("Origin"), audit.MaxField), "sec_fetch_site", audit.Clean(r.Header.Get("Sec-Fetch-Site"), audit.MaxField),
		"sec_fetch_mode", audit.Clean(r.Header.Get("Sec-Fetch-Mode"), audit.MaxField))
	s.failStatus(w, r, http.StatusForbidden, key)
}

// ownRequest says whether a GET that does work comes from the user: a
// browser request this origin made (Sec-Fetch-Site same-origin) or the user
// typed or bookmarked (none), in one of modes — or one with no Fetch
// metadata at all (curl, scripts; browsers send it on every request).
// same-site is not the user's: SameSite=Lax sends the session cookie on a
// sibling subdomain's requests too (its <img>, its links), and one with an
// XSS or user content could make the portal work. Nor is a request of
// another mode from this origin: an <img> the portal showed is no-cors.
func ownRequest(r *http.Request, modes ...string) bool {
	site, mode := r.Header.Get("Sec-Fetch-Site"), r.Header.Get("Sec-Fetch-Mode")
	if site == "" && mode == "" {
		return true
	}
	return (site == "same-origin" || site == "none") && slices.Contains(modes, mode)
}

// sameSiteGET does the work of a GET that does work or writes events (an
// export, a reconciliation, a form that looks up a certificate) only for
// the user's own navigation (ownRequest): SameSite=Lax sends the session
// cookie on a cross-site top-level navigation and on same-site requests
// of any kind, and crossOrigin only guards unsafe methods. A navigation
// from another site (a link in a ticket or a chat) gets the continue page:
// one link to the same address, so the work runs only after a click on
// the portal's own page. Anything else (an <img>, a fetch: the page script
// fetches none of these pages) is refused.
func (s *Server) sameSiteGET(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case ownRequest(r, "navigate"):
			next.ServeHTTP(w, r)
		case r.Header.Get("Sec-Fetch-Mode") == "navigate":
			s.continuePage(w, r, r.URL.RequestURI())
		default:
			s.refuseEmbedded(w, r)
		}
	})
}

// continueSameSite is sameSiteGET for pages people reach from a link in a
// mail (the renew page a reminder links to): a cross-site navigation, which
// is what a click in webmail is, a same-site one and anything else not the
// user's own get a page with one link to the same address instead of the
// work. Following it is a same-origin navigation, so nothing runs unless
// the user clicks on the portal's own page. The page script fetches the
// renew page itself (cors mode: the form again when a step-up is due), so
// that mode is the user's too.
func (s *Server) continueSameSite(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ownRequest(r, "navigate", "cors") {
			s.continuePage(w, r, r.URL.RequestURI())
			return
		}
		next.ServeHTTP(w, r)
	})
}

const (
	valUser    = "user"
	valToken   = "token"
	valRoles   = "roles"
	valExp     = "exp"
	valChecked = "checked" // when Vault last confirmed the token and its roles
	valAuthAt  = "auth_at" // when the user last proved themselves to Vault (login or step-up)
	valMFA     = "mfa"     // "totp" when that proof included a TOTP code
)

// loadSession puts the session, and the identity if logged in, in the context.
// A session whose token Vault has not confirmed for SessionRecheck is checked
// again first (see recheck).
func (s *Server) loadSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.Sessions.Get(r, s.Sessions.Name())
		if err != nil {
			s.fail(w, r, portal.Errorf(portal.EUnavailable, "error.internal", "load session: %w", err))
			return
		}
		ctx := context.WithValue(r.Context(), keySession, sess)
		r = r.WithContext(ctx)
		if id := identityFromSession(sess); id != nil && s.Now().Before(id.ExpiresAt) {
			id, ok := s.recheck(w, r, sess, id)
			if !ok {
				return
			}
			if id != nil {
				ctx = context.WithValue(ctx, keyIdentity, id)
				// The language switch (?lang=) is the user's choice for reminders too.
				if l, ok := i18n.Parse(r.URL.Query().Get("lang")); ok {
					s.rememberLanguage(r, id.Username, l)
				}
				if info, ok := ctx.Value(keyLogInfo).(*logInfo); ok {
					info.user = id.Username
				}
				// A cookie of an id the session moved away from (its
				// answer lost, or a request beside this one moved it):
				// served as the session, and given its cookie again.
				if err := s.reissueCookie(w, r, sess, id); err != nil {
					s.fail(w, r, portal.Errorf(portal.EUnavailable, "error.internal", "reissue session cookie: %w", err))
					return
				}
			}
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// recheck asks Vault about the session's token when the last answer is older
// than SessionRecheck, and returns the identity Vault's live policies give
// now, or nil when the session has ended: it is then deleted, and the
// request goes on as one without a session (GET: the login page; POST: 401).
// When Vault cannot be reached the request is refused with 503 (ok false)
// rather than served on roles Vault may have taken away — except /logout
// (the form and the post), which only ends access.
func (s *Server) recheck(w http.ResponseWriter, r *http.Request, sess *sessions.Session, id *portal.Identity) (*portal.Identity, bool) {
	checked, _ := sess.Values[valChecked].(time.Time)
	if s.Now().Sub(checked) < s.SessionRecheck {
		return id, true
	}
	// Another request of this session may have just asked: an answer up
	// to half an interval old is taken, with its own time, so Vault's word
	// is never older than SessionRecheck.
	live, at, err := s.Service.CheckSession(r.Context(), id, s.SessionRecheck/2)
	switch {
	case err == nil:
		setIdentity(sess, live)
		sess.Values[valChecked] = at
		var saved error
		if gainsRole(id, live) {
			// More privilege: a new session id, so that a copy of the
			// cookie taken before is not the one that gains it.
			saved = s.rotateSession(w, r, sess, live)
		} else {
			saved = s.Sessions.Update(r.Context(), sess)
		}
		if errors.Is(saved, store.ErrNotFound) {
			// Deleted meanwhile: logged out in another request. (One
			// moved to a new id by a request beside this one is followed
			// by Update and Rotate: see session.MoveGrace.)
			return nil, true
		} else if saved != nil {
			// Vault's answer stands for this request; the next one asks again.
			s.Logger.WarnContext(r.Context(), "session recheck not saved", "user", id.Username, "err", saved)
		}
		return live, true
	case portal.ErrorCode(err) == portal.EUnauthorized:
		s.Logger.InfoContext(r.Context(), "session ended by Vault", "user", id.Username, "err", err)
		if err := s.Sessions.Drop(r, w, sess); err != nil {
			s.fail(w, r, portal.Errorf(portal.EUnavailable, "error.internal", "drop session: %w", err))
			return nil, false
		}
		return nil, true
	case r.URL.Path == "/logout":
		return id, true // its form and the logout itself only end access
	default:
		s.fail(w, r, err)
		return nil, false
	}
}

// gainsRole: live holds a role id did not.
func gainsRole(id, live *portal.Identity) bool {
	for _, role := range live.Roles {
		if !id.Has(role) {
			return true
		}
	}
	return false
}

// rotateSession gives the request's session a new id, its values kept (see
// session.Manager.Rotate), when it gains privilege: a step-up, a new role.
// The new cookie, like the login's, lives no longer than id's token.
func (s *Server) rotateSession(w http.ResponseWriter, r *http.Request, sess *sessions.Session, id *portal.Identity) error {
	s.capCookieLife(sess, id)
	return s.Sessions.Rotate(r, w, sess)
}

// capCookieLife makes the session's cookie live no longer than id's Vault
// token: a login's, a rotated or a reissued cookie alike.
func (s *Server) capCookieLife(sess *sessions.Session, id *portal.Identity) {
	if until := id.ExpiresAt.Sub(s.Now()); sess.Options != nil && until > 0 && int(until/time.Second) < sess.Options.MaxAge {
		sess.Options.MaxAge = int(until / time.Second)
	}
}

// continuePage answers with a page holding one link to target, on the
// portal itself: following it is the user's own navigation
// (continueSameSite, and a login whose destination does work).
func (s *Server) continuePage(w http.ResponseWriter, r *http.Request, target string) {
	p := s.newPage(r, "continue.title")
	p.Continue = target
	s.render(w, r, http.StatusOK, "continue", p)
}

// reissueCookie sets the session's cookie again when the request came with
// one of an id it moved away from (session.Manager.Moved), no longer lived
// than id's token, like rotateSession's.
func (s *Server) reissueCookie(w http.ResponseWriter, r *http.Request, sess *sessions.Session, id *portal.Identity) error {
	if !s.Sessions.Moved(r, w, sess) {
		return nil
	}
	s.capCookieLife(sess, id)
	return s.Sessions.Reissue(w, sess)
}

// setIdentity writes id into the session's values.
func setIdentity(sess *sessions.Session, id *portal.Identity) {
	roles := make([]string, len(id.Roles))
	for i, role := range id.Roles {
		roles[i] = string(role)
	}
	sess.Values[valUser] = id.Username
	sess.Values[valToken] = id.Token
	sess.Values[valRoles] = roles
	sess.Values[valExp] = id.ExpiresAt
}

// sessionEnded gives back the Vault token of a session that ends other than
// by logout; the session manager calls it (session.EndFunc).
func (s *Server) sessionEnded(ctx context.Context, values map[any]any, reason string, final bool) error {
	user, _ := values[valUser].(string)
	token, _ := values[valToken].(string)
	if token == "" {
		return nil // never logged in: nothing to give back
	}
	return s.Service.EndSession(ctx, user, token, reason, final)
}

func identityFromSession(sess *sessions.Session) *portal.Identity {
	user, _ := sess.Values[valUser].(string)
	token, _ := sess.Values[valToken].(string)
	roles, _ := sess.Values[valRoles].([]string)
	exp, _ := sess.Values[valExp].(time.Time)
	if user == "" || token == "" {
		return nil
	}
	authAt, _ := sess.Values[valAuthAt].(time.Time)
	mfa, _ := sess.Values[valMFA].(string)
	id := &portal.Identity{Username: user, Token: token, ExpiresAt: exp, AuthAt: authAt, MFA: mfa != ""}
	for _, r := range roles {
		id.Roles = append(id.Roles, portal.Role(r))
	}
	return id
}

// requireLogin sends a browser without a session to the login page, and
// refuses a state-changing request outright.
func (s *Server) requireLogin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if identityFrom(r.Context()) == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				// The login page sends the user back here afterwards (a renew
				// link in a reminder, a bookmarked helpdesk page).
				http.Redirect(w, r, loginURL(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.failStatus(w, r, http.StatusUnauthorized, "error.session_expired")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireRole refuses, with 403, anyone who does not hold role.
func (s *Server) requireRole(role portal.Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if id := identityFrom(r.Context()); id == nil || !id.Has(role) {
				// The request line above carries the (bounded) path.
				s.Logger.WarnContext(r.Context(), "access denied", "request_id", RequestID(r.Context()), "role", string(role))
				s.Service.RecordDenied(r.Context(), id, r.Method+" "+r.URL.Path)
				s.failStatus(w, r, http.StatusForbidden, "error.forbidden")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// clientIP is the address the audit trail records for r: the TCP peer —
// unless the peer is a trusted proxy. Then X-Forwarded-For is read from the
// right, the end the proxies append to, and the first address that is not a
// trusted proxy is the client. Whatever a client writes on the left is never
// believed: a header any client can set must not decide what the trail says.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	peer := peerHost(r)
	addr, err := netip.ParseAddr(peer)
	if err != nil {
		return peer
	}
	addr = addr.Unmap()
	if !isTrusted(addr, trusted) {
		return addr.String()
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			entry := strings.TrimSpace(parts[j])
			if entry == "" {
				continue // "a, , b" or a trailing comma
			}
			hop, err := parseHop(entry)
			if err != nil {
				// Not an address: the last trusted hop is all that is known.
				return addr.String()
			}
			hop = hop.Unmap()
			if !isTrusted(hop, trusted) {
				return hop.String()
			}
			addr = hop
		}
	}
	return addr.String()
}

// parseHop reads one X-Forwarded-For entry: an address, or an address with
// a port as some load balancers write it ("192.0.2.1:4711", "[2001:db8::1]:443").
func parseHop(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, nil
	}
	ap, err := netip.ParseAddrPort(s)
	return ap.Addr(), err
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func peerHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

func peerTrusted(r *http.Request, trusted []netip.Prefix) bool {
	a, err := netip.ParseAddr(peerHost(r))
	return err == nil && isTrusted(a, trusted)
}

// warnUntrustedProxy says, at most once a minute, that requests carry
// X-Forwarded-For from a peer the portal does not trust: either a proxy
// missing from CERTPORTAL_TRUSTED_PROXIES — then the audit trail and the
// failed-login limit see the proxy instead of each browser — or a client
// trying to choose the address it is recorded with.
func (s *Server) warnUntrustedProxy(r *http.Request) {
	now := time.Now().Unix()
	last := s.lastProxyWarning.Load()
	if now-last < 60 || !s.lastProxyWarning.CompareAndSwap(last, now) {
		return
	}
	s.Logger.WarnContext(r.Context(), "X-Forwarded-For from a peer that is not a trusted proxy: ignored; if it is your proxy, add it to CERTPORTAL_TRUSTED_PROXIES, or the audit trail records, and the failed-login limit counts, the proxy for every browser",
		"peer", peerHost(r))
}
