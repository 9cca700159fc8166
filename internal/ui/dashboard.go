package ui

import (
	"net/http"
	"time"

	"github.com/certportal/certportal/internal/portal"
)

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	s.renderDashboard(w, r, http.StatusOK, nil, "")
}

// renderDashboard shows the certificate form, with a failed request's error
// and its non-secret choices kept. Passwords are never echoed back.
func (s *Server) renderDashboard(w http.ResponseWriter, r *http.Request, status int, err *portal.Error, prev string) {
	opts := s.Service.Options()
	p := s.newPage(r, "dash.title")
	p.Subject = p.User.Username + "@" + opts.EmailDomain
	selected := opts.DefaultTTL
	if d, perr := time.ParseDuration(r.PostFormValue("ttl")); perr == nil {
		selected = d
	}
	p.TTLs = ttlOptions(p.Lang, opts.TTLs, selected)
	p.Encryption = prev
	p.WhoamiURL = s.WhoamiURL
	if err != nil {
		p.Error, p.Field = err.Message, err.Field
	}
	s.render(w, r, status, "dashboard", p)
}
