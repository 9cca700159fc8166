package ui

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/certportal/certportal/internal/portal"
)

// helpdeskSearch finds users by name prefix.
func (s *Server) helpdeskSearch(w http.ResponseWriter, r *http.Request) {
	p := s.newPage(r, "helpdesk.title")
	p.Notice = notices[r.URL.Query().Get("notice")]
	q, searched := r.URL.Query()["q"]
	if searched {
		p.Query, p.Searched = q[0], true
		users, err := s.Service.SearchUsers(r.Context(), p.User, q[0])
		if err != nil {
			var pe *portal.Error
			if errors.As(err, &pe) && pe.Code == portal.EInvalid {
				p.Error, p.Field = pe.Message, pe.Field
				s.render(w, r, http.StatusBadRequest, "helpdesk", p)
				return
			}
			s.fail(w, r, err)
			return
		}
		p.Users = users
	}
	s.render(w, r, http.StatusOK, "helpdesk", p)
}

// helpdeskUser shows one user's certificates with revoke and reissue forms.
func (s *Server) helpdeskUser(w http.ResponseWriter, r *http.Request) {
	s.renderHelpdeskUser(w, r, http.StatusOK, chi.URLParam(r, "username"), nil)
}

func (s *Server) renderHelpdeskUser(w http.ResponseWriter, r *http.Request, status int, username string, formErr *portal.Error) {
	p := s.newPage(r, "helpdesk.title")
	p.Notice = notices[r.URL.Query().Get("notice")]
	certs, err := s.Service.UserCertificates(r.Context(), p.User, username)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p.Target, p.Certs, p.CertActions, p.Reasons = username, certs, true, portal.HelpdeskReasons
	if s.Service.OnBehalfEnabled() {
		opts := s.Service.Options()
		selected := opts.DefaultTTL
		if d, perr := time.ParseDuration(r.PostFormValue("ttl")); perr == nil {
			selected = d
		}
		p.OnBehalf, p.TTLs, p.Encryption = true, ttlOptions(p.Lang, opts.TTLs, selected), r.PostFormValue("encryption")
		p.Subject, p.Ticket = username+"@"+opts.EmailDomain, r.PostFormValue("ticket")
	}
	if formErr != nil {
		p.Error, p.Field = formErr.Message, formErr.Field
	}
	s.render(w, r, status, "helpdesk", p)
}

// helpdeskRevoke revokes any user's certificate with a reason and a ticket.
// Reissue is the same revocation, recorded as superseded, after which the
// user enrols again with their own login.
func (s *Server) helpdeskRevoke(reissue bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.parseForm(w, r) {
			return
		}
		reason := r.PostFormValue("reason")
		if reissue {
			reason = "superseded"
		}
		c, err := s.Service.HelpdeskRevoke(r.Context(), identityFrom(r.Context()), chi.URLParam(r, "serial"), reason, r.PostFormValue("ticket"), reissue)
		if err != nil {
			var pe *portal.Error
			if errors.As(err, &pe) && pe.Code == portal.EInvalid && c != nil {
				s.renderHelpdeskUser(w, r, http.StatusBadRequest, c.Username, pe)
				return
			}
			s.fail(w, r, err)
			return
		}
		notice := "hdrevoked"
		if reissue {
			notice = "reissued"
		}
		http.Redirect(w, r, "/helpdesk/users/"+url.PathEscape(c.Username)+"?notice="+notice, http.StatusSeeOther)
	}
}

// helpdeskIssue issues a certificate for another user, when the operator
// switched issuing on behalf on, and streams the .p12 to the staff member.
func (s *Server) helpdeskIssue(w http.ResponseWriter, r *http.Request) {
	if !s.parseForm(w, r) {
		return
	}
	username := chi.URLParam(r, "username")
	req := portal.IssueRequest{
		Password:        r.PostFormValue("password"),
		PasswordConfirm: r.PostFormValue("password_confirm"),
		TTL:             r.PostFormValue("ttl"),
		Encryption:      r.PostFormValue("encryption"),
	}
	dl, err := s.Service.IssueOnBehalf(r.Context(), identityFrom(r.Context()), username, r.PostFormValue("ticket"), req)
	if err != nil {
		var pe *portal.Error
		if errors.As(err, &pe) && (pe.Code == portal.EInvalid || pe.Message == "error.onbehalf_cap") {
			s.renderHelpdeskUser(w, r, statusFor(pe.Code), username, pe)
			return
		}
		s.fail(w, r, err)
		return
	}
	s.sendP12(w, r, dl)
}
