package ui

import (
	"encoding/json"
	"net/http"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/portal"
)

// csrResponse is what the device-key path gets back: the certificate and
// chain the browser packs with its own key, never a key or a file.
type csrResponse struct {
	Certificate string `json:"certificate"`
	CAChain     string `json:"ca_chain"`
	Serial      string `json:"serial"`
	// Filename is the .p12 name the server path would have used.
	Filename string `json:"filename"`
}

// csrError is a refusal, in the user's language, with the catalog key
// for scripts and tests; StepUp asks the page to send the password (and
// code) again in stepup_password and stepup_code.
type csrError struct {
	Error  string `json:"error"`
	Code   string `json:"code"`
	Field  string `json:"field,omitempty"`
	StepUp bool   `json:"stepup,omitempty"`
	MFA    bool   `json:"mfa,omitempty"`
	// Reference is the request's id on a 5xx answer (X-Request-Id).
	Reference string `json:"reference,omitempty"`
}

// certificateCSR signs a CSR made in the browser (POST /certificates/csr).
func (s *Server) certificateCSR(w http.ResponseWriter, r *http.Request) {
	if !s.parseForm(w, r) {
		return
	}
	req := portal.CSRRequest{
		CSR:         r.PostFormValue("csr"),
		TTL:         r.PostFormValue("ttl"),
		Label:       r.PostFormValue("label"),
		Encryption:  r.PostFormValue("encryption"),
		RenewSerial: r.PostFormValue("renew_serial"),
		RevokeOld:   r.PostFormValue("revoke_old") == "1",
	}
	signed, err := s.Service.IssueCSR(r.Context(), identityFrom(r.Context()), req)
	if err != nil {
		s.failJSON(w, r, err)
		return
	}
	s.rememberIssued(r, "", signed.Serial)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, csrResponse{Certificate: string(signed.Certificate), CAChain: string(signed.Chain),
		Serial: signed.Serial, Filename: signed.Filename})
}

// failJSON is fail for the JSON endpoint: the same status and message,
// Vault's and the database's text never shown.
func (s *Server) failJSON(w http.ResponseWriter, r *http.Request, err error) {
	code, status, pe := s.logFailure(w, r, err)
	key := portal.ErrorMessage(err)
	if code == portal.EInternal {
		key = "error.internal"
	}
	lang := i18n.FromRequest(r)
	e := csrError{Error: i18n.T(lang, key), Code: key}
	if status >= 500 {
		// The page shows Error as it is: the reference the message asks
		// the user to quote goes with it, as on the HTML error page.
		e.Reference = RequestID(r.Context())
		e.Error += " " + i18n.T(lang, "error.reference", e.Reference)
	}
	if pe != nil && code == portal.EInvalid {
		e.Field = pe.Field
	}
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
