package ui

import (
	"context"
	"fmt"
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
// A clock skew with Vault over the threshold is reported but keeps the
// portal ready: nothing it decides depends on the two clocks agreeing.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	vaultErr := s.Service.VaultHealth(ctx)
	storeErr := s.Store.Ping(ctx)
	skew := s.skewDetail()
	if vaultErr == nil && storeErr == nil {
		_, _ = w.Write([]byte("ready\n" + skew))
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
	_, _ = w.Write([]byte(skew))
}

// skewDetail is /readyz's line about Vault's clock when it is further from
// the portal's than the threshold, from the latest Vault answer (the health
// call just made is one); "" otherwise.
func (s *Server) skewDetail() string {
	if s.VaultClock == nil {
		return ""
	}
	warn := s.VaultClock.SkewWarn()
	skew, known := s.VaultClock.ClockSkew()
	if !known || warn <= 0 || (skew <= warn && -skew <= warn) {
		return ""
	}
	side := "ahead of"
	if skew < 0 {
		side, skew = "behind", -skew
	}
	return fmt.Sprintf("warning: vault clock %s %s the portal's (over %s): check NTP on both hosts\n", skew, side, warn)
}
