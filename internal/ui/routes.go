package ui

import (
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/web"
)

// routes reads top to bottom: every group shows its middleware stack.
func (s *Server) routes() *chi.Mux {
	r := chi.NewRouter()
	s.ownGETs = chi.NewRouter()
	// requestID comes before recoverer so that a panic's log line and
	// error page carry the id sent as X-Request-Id.
	r.Use(s.requestID, s.recoverer, s.logRequests, s.secureHeaders, s.limitBody, s.language)
	// Error pages load the session too, so a signed-in user keeps the
	// header (who they are, their links, log out) on a 404 or 405.
	r.NotFound(s.loadSession(http.HandlerFunc(s.notFound)).ServeHTTP)
	r.MethodNotAllowed(s.loadSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.failStatus(w, r, http.StatusMethodNotAllowed, "error.method")
	})).ServeHTTP)

	// Probes and public material: no session. HEAD answers as GET does
	// (net/http drops the body): load balancers and curl -I probe with it.
	for path, h := range map[string]http.HandlerFunc{"/healthz": s.healthz, "/readyz": s.readyz, "/ca.pem": s.caPEM} {
		r.Get(path, h)
		r.Head(path, h)
	}
	if s.Metrics != nil && !s.MetricsApart {
		// Counts and latencies only: no user, serial or secret is a label.
		// Restrict who may scrape it at the proxy (docs/operations.md).
		r.Method(http.MethodGet, "/metrics", s.Metrics.Handler())
	}
	// The device-key module, by content-hashed name, cached for a year.
	r.Get("/static/wasm/{name}", s.serveDeviceAsset)
	// The page script too, by its hashed name (the unhashed one is
	// served below, never cached without asking again).
	r.Get(s.script.url(), s.serveScript)
	r.Head(s.script.url(), s.serveScript)
	static, _ := fs.Sub(web.Static, "static")
	files := s.files(static)
	r.Handle("/static/*", http.StripPrefix("/static/", files))
	// Every page links /static/favicon.svg, but browsers still ask for
	// /favicon.ico (for ca.pem opened in a tab, say): the same icon, with
	// the static files' headers, rather than a 404 in the log.
	favicon := serveAs(files, faviconFile)
	r.Get("/favicon.ico", favicon)
	r.Head("/favicon.ico", favicon)

	// Everything a browser posts to is behind cross-origin protection and
	// loads the session.
	r.Group(func(r chi.Router) {
		r.Use(s.crossOrigin, s.loadSession)
		r.Get("/login", s.loginForm)
		r.Post("/login", s.login)
		// The second step of a login with Vault's MFA: the code.
		r.Get("/login/mfa", s.loginMFAForm)
		r.Post("/login/mfa", s.loginMFA)
		// A one-time enrolment link from the helpdesk: password, QR, code.
		// Opened from a mail or a chat (cross-site): a form that does nothing
		// until posted, so not behind sameSiteGET (TestEnrolLinkFromMail).
		r.Get("/enrol", s.enrolForm)
		r.Post("/enrol", s.enrol)

		r.Group(func(r chi.Router) {
			r.Use(s.requireLogin)
			r.Get("/", s.dashboard)
			// Downloads, revocations and helpdesk actions need a recent proof
			// of the user to Vault (stepUp: password, and code with MFA).
			r.With(s.stepUp(stepUpIssue)).Post("/certificates", s.certificateCreate)
			// The device-key path: a CSR in, the certificate out as JSON.
			r.With(s.stepUp(stepUpJSON)).Post("/certificates/csr", s.certificateCSR)
			s.ownGET(r, "/certificates/{serial}/revoke", s.certificateRevokeForm)
			r.With(s.stepUp(stepUpPlain)).Post("/certificates/{serial}/revoke", s.certificateRevoke)
			// The renew page a reminder links to: a link from another site gets a
			// page with a same-origin link; after a login the redirect goes
			// straight there (it only shows the user's own form).
			r.With(s.continueSameSite).Get("/certificates/{serial}/renew", s.certificateRenewForm)
			r.Get("/logout", s.logoutForm)
			r.Post("/logout", s.logout)

			r.Group(func(r chi.Router) {
				r.Use(s.requireRole(portal.RoleHelpdesk))
				r.Get("/helpdesk", s.helpdeskSearch)
				r.Get("/helpdesk/users/{username}", s.helpdeskUser)
				s.ownGET(r, "/helpdesk/certificates/{serial}/revoke", s.helpdeskRevokeForm(false))
				r.With(s.stepUp(stepUpPlain)).Post("/helpdesk/certificates/{serial}/revoke", s.helpdeskRevoke(false))
				s.ownGET(r, "/helpdesk/certificates/{serial}/reissue", s.helpdeskRevokeForm(true))
				r.With(s.stepUp(stepUpPlain)).Post("/helpdesk/certificates/{serial}/reissue", s.helpdeskRevoke(true))
				r.With(s.stepUp(stepUpIssue)).Post("/helpdesk/users/{username}/certificates", s.helpdeskIssue)
				r.With(s.stepUp(stepUpPlain)).Post("/helpdesk/users/{username}/mfa", s.helpdeskEnrol)
				// Certificates Vault holds that the portal never issued
				// (reconciliation's vault_only).
				s.ownGET(r, "/helpdesk/vault-certificates/{serial}/revoke", s.helpdeskVaultRevokeForm)
				r.With(s.stepUp(stepUpPlain)).Post("/helpdesk/vault-certificates/{serial}/revoke", s.helpdeskVaultRevoke)
			})

			r.Group(func(r chi.Router) {
				r.Use(s.requireRole(portal.RoleAuditor))
				r.Get("/audit", s.auditPage)
				s.ownGET(r, "/audit/export", s.auditExport)
				r.Get("/audit/inventory", s.auditInventory)
				r.Get("/audit/inventory/certificates", s.auditInventoryCertificates)
				s.ownGET(r, "/audit/inventory/export", s.auditInventoryExport)
				s.ownGET(r, "/audit/reconcile", s.auditReconcile)
				r.Post("/audit/reconcile", s.auditReconcileStart)
			})
		})
	})
	return r
}

// files serves the embedded static files and nothing else: a directory,
// which http.FileServer would list, is not found.
func (s *Server) files(fsys fs.FS) http.Handler {
	fileServer := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if fi, err := fs.Stat(fsys, name); err != nil || fi.IsDir() || strings.HasSuffix(r.URL.Path, "/") {
			s.failStatus(w, r, http.StatusNotFound, "error.not_found")
			return
		}
		if name == pageScriptFile {
			// A page from before this build may still ask for it by this
			// name (a rolling upgrade): serve it, but never from a cache.
			w.Header().Set("Cache-Control", "no-cache")
		}
		fileServer.ServeHTTP(w, r)
	})
}

// faviconFile is the portal's icon in web/static.
const faviconFile = "favicon.svg"

// serveAs answers with h's answer for name (a path inside the static
// files), whatever path was asked for.
func serveAs(h http.Handler, name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath = "/"+name, ""
		h.ServeHTTP(w, r2)
	}
}

// ownGET routes a GET that does work (an export, a look-up that records
// an event) behind sameSiteGET, and notes its
// pattern in ownGETs: after a login the way there is a click on the
// portal's own page (startSession), not a redirect, because the login form
// may have been reached from another site with that destination.
func (s *Server) ownGET(r chi.Router, pattern string, h http.HandlerFunc) {
	r.With(s.sameSiteGET).Get(pattern, h)
	s.ownGETs.Get(pattern, func(http.ResponseWriter, *http.Request) {})
}

// needsOwnNavigation says whether target (a path with its query, from
// safeNext) is one of the ownGET routes.
func (s *Server) needsOwnNavigation(target string) bool {
	if s.ownGETs == nil {
		return false
	}
	path, _, _ := strings.Cut(target, "?")
	return s.ownGETs.Match(chi.NewRouteContext(), http.MethodGet, path)
}
