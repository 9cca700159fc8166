package ui

import "net/http"

// caPEM serves the issuing CA chain, for Nginx's ssl_client_certificate and
// for users who want to trust the chain explicitly.
func (s *Server) caPEM(w http.ResponseWriter, r *http.Request) {
	chain, err := s.Service.CAChain(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	w.Header().Set("Content-Disposition", `inline; filename="ca.pem"`)
	_, _ = w.Write(chain)
}
