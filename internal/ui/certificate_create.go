package ui

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/certportal/certportal/internal/portal"
)

// certificateCreate issues a certificate and streams it as a .p12 download.
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
	s.sendP12(w, r, dl)
}

// sendP12 streams a freshly issued .p12 and records, after the last byte,
// that it was handed over.
func (s *Server) sendP12(w http.ResponseWriter, r *http.Request, dl *portal.Download) {
	h := w.Header()
	h.Set("Content-Type", "application/x-pkcs12")
	// The page script saves the file under this name too (filename* first).
	h.Set("Content-Disposition", portal.ContentDisposition(dl.Filename, dl.ASCIIName))
	h.Set("Content-Length", strconv.Itoa(len(dl.Data)))
	// The file holds a private key: no cache, proxy or browser may keep a copy.
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Certificate-Serial", dl.Serial)
	if _, err := w.Write(dl.Data); err != nil {
		s.Logger.WarnContext(r.Context(), "download interrupted", "serial", dl.Serial, "err", err)
		return
	}
	// Hand the file over now; the download event is written off the request
	// path. It records a fact that is already true, so it cannot fail the
	// download (issuance was recorded, fail-closed, before the first byte).
	_ = http.NewResponseController(w).Flush()
	ctx, id := context.WithoutCancel(r.Context()), identityFrom(r.Context())
	go s.Service.RecordDownload(ctx, id, dl)
}
