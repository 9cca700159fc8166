package ui

import (
	"net/http"
	"time"

	"github.com/certportal/certportal/internal/portal"
)

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	s.renderIssueForm(w, r, http.StatusOK, "dashboard", nil, "", nil)
}

// renderIssueForm shows the certificate form (on the dashboard or the renew
// page), with a failed request's error and its non-secret choices kept.
// Passwords are never echoed back.
func (s *Server) renderIssueForm(w http.ResponseWriter, r *http.Request, status int, name string, err *portal.Error, prevEnc string, renew *portal.CertificateView) {
	opts := s.Service.Options()
	p := s.newPage(r, "dash.title")
	if name == "renew" {
		p.Title = "renew.title"
	}
	p.Subject = p.User.Username + "@" + opts.EmailDomain
	selected := opts.DefaultTTL
	if d, perr := time.ParseDuration(r.PostFormValue("ttl")); perr == nil {
		selected = d
	}
	p.TTLs = ttlOptions(p.Lang, opts.TTLs, selected)
	p.Encryption = prevEnc
	p.WhoamiURL = s.WhoamiURL
	p.MaxActive = s.Service.MaxActive()
	p.Renew = renew
	p.Notice = notices[r.URL.Query().Get("notice")]
	if err != nil {
		p.Error, p.Field = err.Message, err.Field
	}
	if name == "dashboard" {
		certs, cerr := s.Service.Certificates(r.Context(), p.User.Username)
		if cerr != nil {
			s.fail(w, r, cerr)
			return
		}
		p.Certs, p.CertActions = certs, true
	}
	s.render(w, r, status, name, p)
}
