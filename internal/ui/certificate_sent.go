package ui

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"

	"github.com/certportal/certportal/internal/store"
)

// A browser without the page script posts the certificate form itself and
// gets the save page as the answer (savePage). Reloading that page, or
// going back and forward to it, makes the browser send the same form
// again: another certificate, another key, while the user only wanted to
// see the page again. Each certificate form therefore carries an id of
// its own (fieldFormID, new with every page); the session remembers the
// ids of the last forms that issued a certificate as navigations, and a
// form sent again is answered with the dashboard and what it issued
// (formAlreadySent), not with a second certificate.
//
// It guards against a browser repeating a form, not against the user:
// a fresh page has a fresh form, and the cap on active certificates is
// the bound. Scripts and the page script's fetch (not navigations) are
// not affected.
const (
	fieldFormID  = "form_id"
	valSentForms = "sent_forms" // "form-id serial" of the latest forms that issued
	valIssued    = "issued"     // the serial this session issued last (the dashboard's "ready")
	sentFormsMax = 8
	formIDMax    = 64
)

// newFormID is the id a certificate form is shown with.
func newFormID() string { return rand.Text() }

// formID is the form id r carries, or "" when it carries none the
// portal could have made.
func formID(r *http.Request) string {
	id := r.PostFormValue(fieldFormID)
	if id == "" || len(id) > formIDMax || strings.ContainsFunc(id, func(c rune) bool {
		return !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7')
	}) {
		return ""
	}
	return id
}

// sentForm returns the serial the session's form id issued, if it did.
func sentForm(r *http.Request, id string) (string, bool) {
	sess := sessionFrom(r.Context())
	if id == "" || sess == nil {
		return "", false
	}
	sent, _ := sess.Values[valSentForms].([]string)
	for _, e := range sent {
		if fid, serial, ok := strings.Cut(e, " "); ok && fid == id {
			return serial, true
		}
	}
	return "", false
}

// rememberIssued records in the session that it just issued serial (the
// dashboard's "your certificate is ready": justIssued) and, when form id
// is not "", that form id issued it (sentForm). A failure to save it is
// logged, not the user's problem: the certificate is issued and its file
// or page goes out; only the dashboard's "ready" box would then be
// missing, or a repeat of the form issue again (within the cap, and
// recorded).
func (s *Server) rememberIssued(r *http.Request, id, serial string) {
	s.remember(r, id, serial, true)
}

// rememberSent records only that form id issued serial: a certificate
// helpdesk staff issued for someone else, which is not "ready" on their
// own dashboard.
func (s *Server) rememberSent(r *http.Request, id, serial string) {
	if id != "" {
		s.remember(r, id, serial, false)
	}
}

func (s *Server) remember(r *http.Request, id, serial string, own bool) {
	sess := sessionFrom(r.Context())
	if sess == nil {
		return
	}
	if own {
		sess.Values[valIssued] = serial
	}
	if id != "" {
		sent, _ := sess.Values[valSentForms].([]string)
		sent = append(sent, id+" "+serial)
		if len(sent) > sentFormsMax {
			sent = sent[len(sent)-sentFormsMax:]
		}
		sess.Values[valSentForms] = sent
	}
	if err := s.Sessions.Update(r.Context(), sess); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.Logger.WarnContext(r.Context(), "issued certificate not noted in the session", "serial", serial, "err", err)
	}
}

// forgetIssued ends the session's "your certificate is ready": a
// revocation came after it (the page is about that now), or the file or
// its page never reached the client (serial: only when it is the one
// noted; "" for any). It works on a request whose client is gone.
func (s *Server) forgetIssued(r *http.Request, serial string) {
	sess := sessionFrom(r.Context())
	if sess == nil || sess.Values[valIssued] == nil || (serial != "" && sess.Values[valIssued] != serial) {
		return
	}
	delete(sess.Values, valIssued)
	if err := s.Sessions.Update(context.WithoutCancel(r.Context()), sess); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.Logger.WarnContext(r.Context(), "issued certificate not forgotten in the session", "err", err)
	}
}

// justIssued is the serial this browser session issued last, "" when it
// issued none: another session's certificate, a script's with another
// cookie, or one from before this login (a login starts a fresh
// session) is not "just issued" here.
func justIssued(r *http.Request) string {
	sess := sessionFrom(r.Context())
	if sess == nil {
		return ""
	}
	serial, _ := sess.Values[valIssued].(string)
	return serial
}

// formAlreadySent answers a certificate form the browser sent again with
// the dashboard (a fresh form on it) and a notice naming the certificate
// the form issued the first time: 409, nothing issued.
func (s *Server) formAlreadySent(w http.ResponseWriter, r *http.Request, serial string) {
	s.Logger.InfoContext(r.Context(), "certificate form sent again: not issued twice", "serial", serial)
	p, ok := s.issueFormPage(w, dashboardRequest(r), "dashboard", nil, "", nil)
	if !ok {
		return
	}
	p.Notice = "notice.form_sent"
	if p.NoticeArg, ok = certName(p.Certs, serial); !ok {
		p.NoticeArg = shortSerial(serial) // not in the list this replica read
	}
	s.render(w, r, http.StatusConflict, "dashboard", p)
}
