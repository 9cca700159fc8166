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

// helpdeskUser shows one user's certificates with revoke and re-enrol links.
func (s *Server) helpdeskUser(w http.ResponseWriter, r *http.Request) {
	s.renderHelpdeskUser(w, r, http.StatusOK, chi.URLParam(r, "username"), nil)
}

func (s *Server) renderHelpdeskUser(w http.ResponseWriter, r *http.Request, status int, username string, formErr *portal.Error) {
	if p, ok := s.helpdeskUserPage(w, r, username, formErr); ok {
		s.render(w, r, status, "helpdesk", p)
	}
}

// helpdeskUserPage is the page of username's certificates for r; when it
// cannot be made, it has answered r (ok false).
func (s *Server) helpdeskUserPage(w http.ResponseWriter, r *http.Request, username string, formErr *portal.Error) (*page, bool) {
	p := s.newPage(r, "helpdesk.title")
	p.Self, p.Back = "/helpdesk/users/"+url.PathEscape(username), "/helpdesk"
	p.NoticeArg = username
	certs, known, err := s.Service.UserCertificates(r.Context(), p.User, username)
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	p.Target, p.TargetUnknown, p.Certs, p.CertActions = username, !known, certs, true
	// The serial in full, as this page shows serials.
	if key, c := certNotice(r, helpdeskNotices, certs, p.User.Username); key != "" {
		p.Notice, p.NoticeCert = key, labelled(c, c.Serial)
	}
	p.MFAEnrol = s.Service.MFAEnrolmentOn(r.Context())
	if p.MFAEnrol && known {
		p.MFANo = s.Service.EnrolmentRefusal(r.Context(), p.User, username)
	}
	s.sentReminders(r, p, username)
	if p.Offboarded, err = s.Service.OffboardRevocations(r.Context(), p.User, username); err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	if s.Service.OnBehalfEnabled() && known {
		// The form only where it can work: an employee's page.
		switch why, _, err := s.Service.OnBehalfRefusal(r.Context(), username); {
		case err != nil:
			s.Logger.WarnContext(r.Context(), "helpdesk page: cannot tell whether on-behalf issuance is open for the user", "user", username, "err", err)
			p.OnBehalfNo = "helpdesk.onbehalf_unknown"
		case why != "":
			p.OnBehalfNo = portal.OnBehalfRefusalMessage(why)
		}
		if username == p.User.Username {
			p.OnBehalfNo = "error.onbehalf_self"
		}
	}
	if s.Service.OnBehalfEnabled() && known && p.OnBehalfNo == "" {
		opts := s.Service.Options()
		selected := opts.DefaultTTL
		if d, perr := time.ParseDuration(r.PostFormValue("ttl")); perr == nil {
			selected = d
		}
		p.OnBehalf, p.TTLs, p.Encryption = true, ttlOptions(p.Lang, opts.TTLs, selected), r.PostFormValue("encryption")
		p.Subject, p.Ticket, p.Label = username+"@"+opts.EmailDomain, r.PostFormValue("ticket"), r.PostFormValue("label")
		p.FormID = newFormID()
	}
	if formErr != nil {
		p.Error, p.Field = formErr.Message, formErr.Field
	}
	return p, true
}

// helpdeskRevokeForm is the confirmation step before a helpdesk revocation:
// a page of its own, so it works without JavaScript and nobody revokes with
// one stray click. reenrol is the "revoke so the user enrols again" form.
func (s *Server) helpdeskRevokeForm(reenrol bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.renderHelpdeskRevoke(w, r, http.StatusOK, reenrol, nil)
	}
}

func (s *Server) renderHelpdeskRevoke(w http.ResponseWriter, r *http.Request, status int, reenrol bool, formErr *portal.Error) {
	c, err := s.Service.HelpdeskCertificate(r.Context(), identityFrom(r.Context()), chi.URLParam(r, "serial"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	title := "helpdesk.revoke_title"
	if reenrol {
		title = "helpdesk.reenrol_title"
	}
	p := s.newPage(r, title)
	action := "revoke"
	if reenrol {
		action = "reissue"
	}
	p.Self = "/helpdesk/certificates/" + c.Serial + "/" + action
	p.Back = "/helpdesk/users/" + url.PathEscape(c.Username)
	p.Renew, p.Reasons, p.ReenrolMode, p.Target = &c, portal.HelpdeskReasons, reenrol, c.Username
	p.ReenrolExplain = "helpdesk.reenrol_explain"
	if s.Service.OnBehalfEnabled() {
		p.ReenrolExplain = "helpdesk.reenrol_explain_onbehalf"
	}
	if r.Method == http.MethodPost {
		p.Ticket = r.PostFormValue("ticket")
		p.Reason = r.PostFormValue("reason")
	}
	if formErr != nil {
		p.Error, p.Field = formErr.Message, formErr.Field
	}
	s.render(w, r, status, "helpdesk_revoke", p)
}

// helpdeskRevoke revokes any user's certificate with a reason and a ticket.
// The re-enrol action is the same revocation, recorded as superseded (so it
// asks for no reason), after which the user enrols again with their own
// login: the portal keeps no user's key, so it cannot "reissue" one.
func (s *Server) helpdeskRevoke(reenrol bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.parseForm(w, r) {
			return
		}
		reason := r.PostFormValue("reason")
		if reenrol {
			reason = "superseded"
		}
		c, err := s.Service.HelpdeskRevoke(r.Context(), identityFrom(r.Context()), chi.URLParam(r, "serial"), reason, r.PostFormValue("ticket"), reenrol)
		if err != nil {
			var pe *portal.Error
			if errors.As(err, &pe) && pe.Code == portal.EInvalid && pe.Field != "serial" {
				s.renderHelpdeskRevoke(w, r, http.StatusBadRequest, reenrol, pe)
				return
			}
			s.fail(w, r, err)
			return
		}
		notice := "hdrevoked"
		if reenrol {
			notice = "reissued"
		}
		http.Redirect(w, r, "/helpdesk/users/"+url.PathEscape(c.Username)+"?notice="+notice+"&serial="+url.QueryEscape(c.Serial), http.StatusSeeOther)
	}
}

// helpdeskIssue issues a certificate for another user, when the operator
// switched issuing on behalf on, and streams the .p12 to the staff member
// (the page script saves it and shows the user's page with notice
// "onbehalf"), or, to a browser that posted the form itself, answers with
// the user's page carrying the file (helpdeskSavePage). As on the
// dashboard, a browser sending a form that already issued (a reload of
// that page) issues nothing twice (certificate_sent.go).
func (s *Server) helpdeskIssue(w http.ResponseWriter, r *http.Request) {
	if !s.parseForm(w, r) {
		return
	}
	username := chi.URLParam(r, "username")
	form := ""
	if navigated(r) {
		form = formID(r)
		if serial, sent := sentForm(r, form); sent {
			s.helpdeskFormSent(w, r, username, serial)
			return
		}
	}
	req := portal.IssueRequest{
		Password:        r.PostFormValue("password"),
		PasswordConfirm: r.PostFormValue("password_confirm"),
		TTL:             r.PostFormValue("ttl"),
		Encryption:      r.PostFormValue("encryption"),
		Label:           r.PostFormValue("label"),
	}
	dl, err := s.Service.IssueOnBehalf(r.Context(), identityFrom(r.Context()), username, r.PostFormValue("ticket"), req)
	if err != nil {
		var pe *portal.Error
		if errors.As(err, &pe) && (pe.Code == portal.EInvalid || pe.Message == "error.onbehalf_cap" || portal.IsOnBehalfRefusal(pe.Message)) {
			s.renderHelpdeskUser(w, r, statusFor(pe.Code), username, pe)
			return
		}
		s.fail(w, r, err)
		return
	}
	if navigated(r) {
		s.rememberSent(r, form, dl.Serial)
		s.helpdeskSavePage(w, r, username, dl)
		return
	}
	s.sendP12(w, r, dl)
}

// helpdeskSavePage is the user's page, as the page script shows it after
// its download, with the new certificate named in the notice and its file
// as a save link: a browser answered with the file alone would save it
// and stay on the filled-in form, the list without the new certificate.
func (s *Server) helpdeskSavePage(w http.ResponseWriter, r *http.Request, username string, dl *portal.Download) {
	if s.clientGone(r, dl) {
		return
	}
	get := pageRequest(r, "/helpdesk/users/"+url.PathEscape(username))
	p, ok := s.helpdeskUserPage(w, get, username, nil)
	if !ok {
		s.notDelivered(r, dl, "the page with the file could not be made")
		return
	}
	// The serial in full, as this page shows serials.
	p.Notice, p.NoticeCert = "notice.onbehalf_named", dl.Serial
	if c, ok := listedCert(p.Certs, dl.Serial); ok {
		p.NoticeCert = labelled(c, c.Serial)
	}
	s.offerFile(w, get, r, dl, "helpdesk", p)
}

// helpdeskFormSent answers an on-behalf form the browser sent again with
// the user's page and a notice naming the certificate the form issued the
// first time: 409, nothing issued.
func (s *Server) helpdeskFormSent(w http.ResponseWriter, r *http.Request, username, serial string) {
	s.Logger.InfoContext(r.Context(), "on-behalf form sent again: not issued twice", "serial", serial)
	get := pageRequest(r, "/helpdesk/users/"+url.PathEscape(username))
	p, ok := s.helpdeskUserPage(w, get, username, nil)
	if !ok {
		return
	}
	p.Notice, p.NoticeCert = "notice.onbehalf_sent", serial
	if c, ok := listedCert(p.Certs, serial); ok {
		p.NoticeCert = labelled(c, c.Serial)
	}
	s.render(w, r, http.StatusConflict, "helpdesk", p)
}
