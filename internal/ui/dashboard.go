package ui

import (
	"net/http"
	"time"

	"github.com/certportal/certportal/internal/portal"
)

// recentWindow is how long after an issuance the dashboard leads with "your
// certificate is ready, install it" (the password you just chose): the
// page the page script shows after its download, and that page reloaded
// (a browser without the script gets it with the file as the answer to
// its form: savePage). Only the browser session that issued it sees it
// (the session notes the serial: rememberIssued), and only while that
// certificate is still active: not after a fresh login, on another
// device, once it was revoked, or after this session revoked any
// certificate (forgetIssued).
// The certificate is read from the inventory and the session from the
// store, so any replica shows it.
const recentWindow = 15 * time.Minute

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	s.renderIssueForm(w, r, http.StatusOK, "dashboard", nil, "", nil)
}

// renderIssueForm shows the certificate form (on the dashboard or the renew
// page), with a failed request's error and its non-secret choices kept.
// Passwords are never echoed back.
func (s *Server) renderIssueForm(w http.ResponseWriter, r *http.Request, status int, name string, err *portal.Error, prevEnc string, renew *portal.CertificateView) {
	if p, ok := s.issueFormPage(w, r, name, err, prevEnc, renew); ok {
		s.render(w, r, status, name, p)
	}
}

// issueFormPage is renderIssueForm's page, for the caller to render; when
// the user's certificates cannot be listed it has answered with the error
// page instead (ok false).
func (s *Server) issueFormPage(w http.ResponseWriter, r *http.Request, name string, err *portal.Error, prevEnc string, renew *portal.CertificateView) (*page, bool) {
	opts := s.Service.Options()
	p := s.newPage(r, "dash.title")
	if name == "renew" {
		p.Title = "renew.title"
	}
	p.Subject = p.User.Username + "@" + opts.EmailDomain
	if s.device != nil {
		p.DeviceWasm, p.DeviceExec = s.device.wasmURL(), s.device.execURL()
		p.DeviceRequired = s.Service.DeviceKeys() == portal.DeviceKeysRequired
		p.KeyServer = !p.DeviceRequired && r.PostFormValue("key_origin") == "server"
	}
	selected := opts.DefaultTTL
	if d, perr := time.ParseDuration(r.PostFormValue("ttl")); perr == nil {
		selected = d
	}
	p.TTLs = ttlOptions(p.Lang, opts.TTLs, selected)
	client := detectPlatform(r.UserAgent())
	p.Install = installSteps(client)
	// A failed post keeps its choice; a renewal keeps the certificate's own
	// encryption (a compat file was compat for a reason), whichever side
	// packed it: the browser posts its choice with the CSR. Otherwise, and
	// for device-key rows from before that (portal.EncryptionDevice, the
	// file's encryption unknown), the browser decides.
	switch {
	case prevEnc != "":
		p.Encryption, p.EncReason = prevEnc, ""
	case renew != nil && portal.KnownEncryption(renew.Encryption):
		p.Encryption, p.EncReason = renew.Encryption, "dash.enc_reason_renew"
	default:
		p.Encryption = client.DefaultEncryption()
		p.EncReason = "dash.enc_reason_" + p.Encryption
	}
	p.Label = r.PostFormValue("label")
	if renew != nil && r.Method == http.MethodGet {
		p.Label = renew.Label
	}
	p.FormID = newFormID()
	p.WhoamiURL = s.WhoamiURL
	p.MaxActive = s.Service.MaxActive()
	p.Renew = renew
	// A refused renewal comes back as it was sent: re-ticking "revoke the
	// old one" would revoke a certificate the user chose to keep.
	p.KeepOld = renew != nil && r.Method == http.MethodPost && r.PostFormValue("revoke_old") != "1"
	if err != nil {
		p.Error, p.Field = err.Message, err.Field
	}
	if name == "dashboard" {
		certs, cerr := s.Service.Certificates(r.Context(), p.User.Username)
		if cerr != nil {
			s.fail(w, r, cerr)
			return nil, false
		}
		p.Certs, p.CertActions = certs, true
		if key, c := certNotice(r, dashboardNotices, certs, p.User.Username); key != "" {
			p.Notice, p.NoticeArg = key, labelled(c, shortSerial(c.Serial))
		}
		active, issued := 0, justIssued(r)
		for i, c := range certs {
			if c.Status != portal.StatusActive && c.Status != portal.StatusExpiring {
				continue
			}
			active++
			// Not next to a notice (a revocation's): that is what the
			// page is about then.
			if issued != "" && c.Serial == issued && s.Service.Now().Sub(c.IssuedAt) < recentWindow && err == nil && p.Notice == "" {
				p.Recent = &certs[i]
			}
		}
		p.AtCap = active >= p.MaxActive
		s.sentReminders(r, p, p.User.Username)
	}
	return p, true
}

// certName is how a notice names the listed certificate serial: its label
// and short serial, or the short serial alone; ok false when it is not
// listed.
func certName(certs []portal.CertificateView, serial string) (string, bool) {
	c, ok := listedCert(certs, serial)
	if !ok {
		return "", false
	}
	return labelled(c, shortSerial(c.Serial)), true
}

// labelled names c by its label and serial ("laptop (ab:cd…)"), or by the
// serial alone; serial is c's serial as the page shows it.
func labelled(c portal.CertificateView, serial string) string {
	if c.Label != "" {
		return c.Label + " (" + serial + ")"
	}
	return serial
}

// listedCert is the listed certificate serial; ok false when it is not
// listed (or serial is "").
func listedCert(certs []portal.CertificateView, serial string) (portal.CertificateView, bool) {
	for _, c := range certs {
		if serial != "" && c.Serial == serial {
			return c, true
		}
	}
	return portal.CertificateView{}, false
}
