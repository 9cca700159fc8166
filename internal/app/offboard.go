package app

import (
	"context"
	"log/slog"

	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/vault"
)

// BuildService wires the domain service without the web server, for
// commands that run one job with serve's settings (`certportal offboard`).
// close releases the store.
func BuildService(ctx context.Context, cfg config.Config, log *slog.Logger) (*portal.Service, func(), error) {
	st, err := OpenStore(ctx, cfg.DB)
	if err != nil {
		return nil, nil, err
	}
	vc, err := vault.New(vault.Config{Addr: cfg.VaultAddr, CACert: cfg.VaultCACert, Timeout: cfg.VaultTimeout})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	ident, err := vc.NewService(vault.AppRole{Mount: cfg.AppRoleMount, RoleID: cfg.AppRoleRoleID,
		SecretID: cfg.AppRoleSecretID, SecretIDFile: cfg.AppRoleSecretIDFile}, log)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	svc := portal.NewService(vc, ident, st, PortalOptions(cfg), log)
	return svc, func() { st.Close() }, nil
}
