package ui

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/go-chi/chi/v5"

	"github.com/certportal/certportal/internal/portal"
)

// certificateRevokeForm asks for confirmation and a reason.
func (s *Server) certificateRevokeForm(w http.ResponseWriter, r *http.Request) {
	c, err := s.Service.Certificate(r.Context(), identityFrom(r.Context()), chi.URLParam(r, "serial"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := s.newPage(r, "revoke.title")
	p.Renew = &c
	p.Reasons = portal.UserReasons
	s.render(w, r, http.StatusOK, "revoke", p)
}

// certificateRevoke revokes one of the user's own certificates.
func (s *Server) certificateRevoke(w http.ResponseWriter, r *http.Request) {
	if !s.parseForm(w, r) {
		return
	}
	id := identityFrom(r.Context())
	_, err := s.Service.RevokeOwn(r.Context(), id, chi.URLParam(r, "serial"), r.PostFormValue("reason"))
	if err != nil {
		var pe *portal.Error
		if errors.As(err, &pe) && pe.Code == portal.EInvalid && pe.Field == "reason" {
			if c, cerr := s.Service.Certificate(r.Context(), id, chi.URLParam(r, "serial")); cerr == nil {
				p := s.newPage(r, "revoke.title")
				p.Renew, p.Reasons, p.Error = &c, portal.UserReasons, pe.Message
				s.render(w, r, http.StatusBadRequest, "revoke", p)
				return
			}
		}
		s.fail(w, r, err)
		return
	}
	// The dashboard is about the revocation now, not "your certificate is
	// ready" for one issued before it.
	s.forgetIssued(r, "")
	// The serial names the certificate in the notice; the dashboard shows
	// it only when it is one of the user's own (never text from the link).
	http.Redirect(w, r, "/?notice=revoked&serial="+url.QueryEscape(chi.URLParam(r, "serial")), http.StatusSeeOther)
}

// certificateRenewForm shows the issue form bound to an existing certificate.
func (s *Server) certificateRenewForm(w http.ResponseWriter, r *http.Request) {
	c, err := s.Service.Certificate(r.Context(), identityFrom(r.Context()), chi.URLParam(r, "serial"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.renderIssueForm(w, r, http.StatusOK, "renew", nil, "", &c)
}
