package ui

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/certportal/certportal/internal/portal"
)

// helpdeskVaultRevokeForm shows a certificate Vault holds that the portal
// never issued (linked from the reconciliation page), with the form that
// revokes it.
func (s *Server) helpdeskVaultRevokeForm(w http.ResponseWriter, r *http.Request) {
	s.renderVaultRevoke(w, r, http.StatusOK, nil)
}

func (s *Server) renderVaultRevoke(w http.ResponseWriter, r *http.Request, status int, formErr *portal.Error) {
	p := s.newPage(r, "helpdesk.vault_revoke_title")
	vc, err := s.Service.VaultOnlyCertificate(r.Context(), p.User, chi.URLParam(r, "serial"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p.VaultCert, p.Reasons, p.Ticket = vc, portal.HelpdeskReasons, r.PostFormValue("ticket")
	// Only of a certificate Vault reports revoked: a link cannot make the
	// page say a live one was.
	if r.URL.Query().Get("notice") == "revoked" && vc.Revoked {
		p.Notice = "notice.vault_revoked"
	}
	if formErr != nil {
		p.Error, p.Field = formErr.Message, formErr.Field
	}
	s.render(w, r, status, "helpdesk_vault_revoke", p)
}

// helpdeskVaultRevoke revokes it, with a reason and a ticket.
func (s *Server) helpdeskVaultRevoke(w http.ResponseWriter, r *http.Request) {
	if !s.parseForm(w, r) {
		return
	}
	serial := chi.URLParam(r, "serial")
	vc, err := s.Service.RevokeVaultOnly(r.Context(), identityFrom(r.Context()), serial,
		r.PostFormValue("reason"), r.PostFormValue("ticket"), r.PostFormValue("confirm_server") == "yes")
	if err != nil {
		var pe *portal.Error
		// A form mistake comes back on the form; a serial that is not a
		// vault-only certificate gets the error page.
		if errors.As(err, &pe) && pe.Code == portal.EInvalid && pe.Field != "serial" {
			s.renderVaultRevoke(w, r, http.StatusBadRequest, pe)
			return
		}
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/helpdesk/vault-certificates/"+vc.Serial+"/revoke?notice=revoked", http.StatusSeeOther)
}
