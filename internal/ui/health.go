package ui

import (
	"context"
	"net/http"
	"time"
)

// healthz answers as long as the process serves HTTP.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz is ready only when Vault is reachable and unsealed and the store
// answers: a load balancer should not send users to a portal that cannot issue.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	vaultErr := s.Service.VaultHealth(ctx)
	storeErr := s.Store.Ping(ctx)
	if vaultErr == nil && storeErr == nil {
		_, _ = w.Write([]byte("ready\n"))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	if vaultErr != nil {
		s.Logger.WarnContext(ctx, "not ready: vault", "err", vaultErr)
		_, _ = w.Write([]byte("vault: unavailable or sealed\n"))
	}
	if storeErr != nil {
		s.Logger.WarnContext(ctx, "not ready: store", "err", storeErr)
		_, _ = w.Write([]byte("store: unavailable\n"))
	}
}
