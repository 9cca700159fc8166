package ui

import (
	"bytes"
	"encoding/base64"
	"errors"
	"html/template"
	"image"
	"image/png"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/vault"
)

// helpdeskEnrol makes a one-time enrolment link for a user (with reset:
// after destroying their secret) and shows it once.
func (s *Server) helpdeskEnrol(w http.ResponseWriter, r *http.Request) {
	if !s.parseForm(w, r) {
		return
	}
	username := chi.URLParam(r, "username")
	link, err := s.Service.StartEnrolment(r.Context(), identityFrom(r.Context()), username, r.PostFormValue("ticket"), r.PostFormValue("reset") == "1")
	if err != nil {
		var pe *portal.Error
		if errors.As(err, &pe) && pe.Code == portal.EInvalid {
			// The page has two ticket fields (this form's and the
			// on-behalf form's): name and mark this one.
			if pe.Field == "ticket" {
				fe := *pe
				fe.Field = "mfa_ticket"
				pe = &fe
			}
			s.renderHelpdeskUser(w, r, http.StatusBadRequest, username, pe)
			return
		}
		s.fail(w, r, err)
		return
	}
	p := s.newPage(r, "enrol.link_title")
	p.Target = link.Username
	// The portal's configured address when there is one: the Host header
	// is the client's to choose, and a link the agent passes on must not
	// lead anywhere else.
	base := strings.TrimRight(s.PublicURL, "/")
	if base == "" {
		scheme := "http"
		if s.Secure || r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	// The token rides in the fragment, which browsers never send: no
	// reverse proxy or access log in front of the portal sees it. The
	// page script moves it into the form (web/static/portal.js); without
	// script the user pastes it into the form's field.
	p.EnrolURL = base + "/enrol#token=" + url.QueryEscape(link.Token)
	p.EnrolExpires = link.ExpiresAt
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, http.StatusOK, "enrol_link", p)
}

// enrolRelang, in the query, asks for the enrolment form again in the
// language of the query's lang: the form's language switch.
const enrolRelang = "enrol_relang"

// enrolForm is the page a link opens. The token is in the link's
// fragment, which the page script puts into the form; a link from before
// that change still carries it in the query, which fills the field here.
func (s *Server) enrolForm(w http.ResponseWriter, r *http.Request) {
	s.renderEnrol(w, r, http.StatusOK, r.URL.Query().Get("token"), "", "")
}

// renderEnrol shows the enrolment form with token and username kept, and
// errKey (a catalog key) when a try was refused. Its language switch
// posts the form back with enrolRelang rather than linking to
// /enrol?lang=…: the token reached the page in the link's fragment (or
// was pasted into the field), so only the form holds it, and a link would
// leave it behind, or, carrying it, put it into a URL that proxies and
// access logs keep.
func (s *Server) renderEnrol(w http.ResponseWriter, r *http.Request, status int, token, username, errKey string) {
	p := s.newPage(r, "enrol.title")
	p.EnrolToken = token
	p.Username = username
	p.Error = errKey
	p.EnrolRelang = true
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, status, "enrol", p)
}

// enrol takes the password, spends the link and shows the QR code Vault
// generated, once, with the code form that finishes the login.
func (s *Server) enrol(w http.ResponseWriter, r *http.Request) {
	if !s.parseForm(w, r) {
		return
	}
	token, username := r.PostFormValue("token"), r.PostFormValue("username")
	if r.URL.Query().Has(enrolRelang) {
		// The language switch: the same form in the chosen language, the
		// token and name kept. Never a try (nothing spent, nothing
		// counted), and the password the form carried is not echoed.
		s.renderEnrol(w, r, http.StatusOK, token, username, "")
		return
	}
	pending, key, err := s.Service.BeginEnrolment(r.Context(), token, username, r.PostFormValue("password"))
	if err != nil {
		var pe *portal.Error
		if errors.As(err, &pe) && (pe.Code == portal.EUnauthorized || pe.Code == portal.ETooMany || pe.Code == portal.EInvalid) {
			setRetryAfter(w, pe)
			s.renderEnrol(w, r, statusFor(pe.Code), token, username, pe.Message)
			return
		}
		s.fail(w, r, err)
		return
	}
	if !s.keepPending(w, r, pending, key) {
		return
	}
	s.renderScan(w, r, pending.Username, key, "enrol.scan_intro")
}

// renderScan shows a secret Vault just generated, once: its QR code and
// key, with the code form that finishes the pending login.
func (s *Server) renderScan(w http.ResponseWriter, r *http.Request, username string, key *vault.TOTPKey, intro string) {
	s.renderScanStatus(w, r, http.StatusOK, username, key, intro, nil)
}

// renderScanStatus is renderScan with a status and, after a refused code,
// its error (a wait when throttled).
func (s *Server) renderScanStatus(w http.ResponseWriter, r *http.Request, status int, username string, key *vault.TOTPKey, intro string, codeErr *portal.Error) {
	p := s.newPage(r, "enrol.scan_title")
	p.Username = username
	p.ScanIntro = intro
	p.ScanKey = key.URL
	if codeErr != nil {
		p.Error = codeErr.Message
		if p.ErrorWait = waitMinutes(codeErr); p.ErrorWait > 0 && codeErr.Code == portal.ETooMany {
			p.Error += "_wait"
		} else {
			p.ErrorWait = 0
		}
	}
	// A data: URL of Vault's own PNG, base64 of bytes only: safe to mark.
	p.QRImage = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(key.PNG))
	if u, perr := url.Parse(key.URL); perr == nil {
		p.TOTPSecret = groupKey(u.Query().Get("secret"))
	}
	// The secret is on this page only: never cached, and the image comes
	// inline (no second request that would need the secret kept), so
	// this page alone allows data: images. The page script as on every
	// page (without script-src, default-src 'none' blocked it); no
	// connect-src: nothing here fetches.
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", cspScan)
	s.render(w, r, status, "enrol_scan", p)
}

// qrPNG draws the QR code of an otpauth URL as a PNG, 200 px square as
// Vault draws it, for a scan page shown again (scanAgain).
func qrPNG(content string) ([]byte, error) {
	m, err := qrcode.NewQRCodeWriter().Encode(content, gozxing.BarcodeFormat_QR_CODE, 200, 200, nil)
	if err != nil {
		return nil, err
	}
	img := image.NewGray(image.Rect(0, 0, m.GetWidth(), m.GetHeight()))
	for y := 0; y < m.GetHeight(); y++ {
		for x := 0; x < m.GetWidth(); x++ {
			if !m.Get(x, y) {
				img.Pix[y*img.Stride+x] = 0xff
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// groupKey shows a base32 TOTP key in groups of four, as authenticator apps
// accept it typed in: 32 characters in a row are easy to misread.
func groupKey(k string) string {
	var b strings.Builder
	for i, r := range k {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}
