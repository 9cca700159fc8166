package ui

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/certportal/certportal/internal/portal"
)

// certificateCreate issues a certificate and streams it as a .p12 download
// (curl, scripts, the page script's fetch), or, to a browser that posted
// the form itself, answers with the page that offers it (savePage).
func (s *Server) certificateCreate(w http.ResponseWriter, r *http.Request) {
	if !s.parseForm(w, r) {
		return
	}
	req := portal.IssueRequest{
		Password:        r.PostFormValue("password"),
		PasswordConfirm: r.PostFormValue("password_confirm"),
		TTL:             r.PostFormValue("ttl"),
		Encryption:      r.PostFormValue("encryption"),
		RenewSerial:     r.PostFormValue("renew_serial"),
		RevokeOld:       r.PostFormValue("revoke_old") == "1",
		Label:           r.PostFormValue("label"),
	}
	// A browser sending a form that already issued (a reload of the save
	// page): no second certificate (certificate_sent.go).
	form := ""
	if navigated(r) {
		form = formID(r)
		if serial, sent := sentForm(r, form); sent {
			s.formAlreadySent(w, r, serial)
			return
		}
	}
	dl, err := s.Service.Issue(r.Context(), identityFrom(r.Context()), req)
	if err != nil {
		var pe *portal.Error
		if errors.As(err, &pe) && (pe.Code == portal.EInvalid || pe.Message == "error.cap_reached") {
			status := statusFor(pe.Code)
			if req.RenewSerial != "" {
				if c, cerr := s.Service.Certificate(r.Context(), identityFrom(r.Context()), req.RenewSerial); cerr == nil {
					s.renderIssueForm(w, r, status, "renew", pe, req.Encryption, &c)
					return
				}
			}
			s.renderIssueForm(w, r, status, "dashboard", pe, req.Encryption, nil)
			return
		}
		s.fail(w, r, err)
		return
	}
	// This session just issued it: its dashboard says "ready" (dashboard.go).
	s.rememberIssued(r, form, dl.Serial)
	if navigated(r) {
		s.savePage(w, r, dl)
		return
	}
	s.sendP12(w, r, dl)
}

// sendP12 streams a freshly issued .p12 and records whether it reached the
// client (deliver).
func (s *Server) sendP12(w http.ResponseWriter, r *http.Request, dl *portal.Download) {
	if s.clientGone(r, dl) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-pkcs12")
	// The page script saves the file under this name too (filename* first).
	h.Set("Content-Disposition", portal.ContentDisposition(dl.Filename, dl.ASCIIName))
	h.Set("Content-Length", strconv.Itoa(len(dl.Data)))
	// The file holds a private key: no cache, proxy or browser may keep a copy.
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Certificate-Serial", dl.Serial)
	s.deliver(w, r, dl, dl.Data, "file", func(n int) int { return n })
}

// clientGone records that dl never went out when the client hung up
// while it was issued. The issuance ran detached from the request
// (portal.Service.Issue), so its certificate is recorded; say the file
// never went out rather than write to nobody.
func (s *Server) clientGone(r *http.Request, dl *portal.Download) bool {
	if r.Context().Err() == nil {
		return false
	}
	s.forgetIssued(r, dl.Serial) // no file, nothing "ready"
	go s.Service.RecordDownload(context.WithoutCancel(r.Context()), identityFrom(r.Context()), dl, 0, "the client closed the connection before the file was sent")
	return true
}

// deliver writes body, the answer carrying dl's file (what: the file
// itself, or the page with it), and records whether it reached the
// client: after the last byte was acknowledged by the client's side of
// the connection (delivery.go), or not, and why. fileBytes says how many
// of the file's bytes the first n bytes of body carry. Issuance was
// recorded, fail-closed, before any of this; its record stays whatever
// happens here.
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, dl *portal.Download, body []byte, what string, fileBytes func(n int) int) {
	ctx, id := context.WithoutCancel(r.Context()), identityFrom(r.Context())
	n, err := w.Write(body)
	if err == nil {
		err = http.NewResponseController(w).Flush()
	}
	if err == nil {
		// Written is not received: the kernel takes the whole answer at
		// once. Wait (bounded) for the client's acknowledgement of the
		// last byte.
		err = awaitDelivery(r.Context(), deliveryWait)
	}
	sent := fileBytes(n)
	if err != nil && !errors.Is(err, errUnconfirmed) {
		s.Logger.WarnContext(r.Context(), "download interrupted", "serial", dl.Serial, "sent_bytes", sent, "err", err)
		s.forgetIssued(r, dl.Serial) // the dashboard must not say "ready, install it"
		go s.Service.RecordDownload(ctx, id, dl, sent, "the connection broke before the client received the whole "+what+": "+err.Error())
		return
	}
	// Delivered, or at least sent with nothing seen to go wrong: the trail
	// then claims delivery (the safe side for a file holding a private key).
	// The event records a fact that is already true, so it is written off
	// the request path and cannot fail the download.
	go s.Service.RecordDownload(ctx, id, dl, sent, "")
}
