package ui

import "net/http"

// logoutForm answers GET /logout — a link, a bookmark, a typed address —
// with a page holding the logout button: logging out changes state, so it
// stays a POST (a cross-site link cannot log anyone out).
func (s *Server) logoutForm(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "logout", s.newPage(r, "logout.title"))
}

// logout revokes the Vault token and deletes the session. The session goes
// even when Vault cannot be reached; that failure is logged loudly, since
// the token then lives until its TTL.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	id := identityFrom(r.Context())
	if err := s.Service.Logout(r.Context(), id); err != nil {
		s.Logger.ErrorContext(r.Context(), "logout: token not revoked", "user", id.Username, "err", err)
	}
	sess := sessionFrom(r.Context())
	sess.Options.MaxAge = -1
	if err := sess.Save(r, w); err != nil {
		s.fail(w, r, err)
		return
	}
	// Pages of the session the browser may still hold (the back-forward
	// cache keeps even no-store pages in some browsers; a save page holds
	// a .p12) go with it: Back after logout shows none of them.
	w.Header().Set("Clear-Site-Data", `"cache"`)
	s.Logger.InfoContext(r.Context(), "logout", "user", id.Username)
	http.Redirect(w, r, "/login?logged_out=1", http.StatusSeeOther)
}
