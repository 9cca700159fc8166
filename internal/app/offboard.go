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
	vc, ident, err := ServiceIdentity(cfg, log)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	svc := portal.NewService(vc, ident, st, PortalOptions(cfg), log)
	return svc, func() { st.Close() }, nil
}

// ServiceIdentity is the Vault client and the portal's own identity
// (AppRole), for commands that act without a user: `offboard`, and
// `notify` when owners' addresses come from Vault.
func ServiceIdentity(cfg config.Config, log *slog.Logger) (*vault.Client, *vault.Service, error) {
	vc, err := vault.New(vault.Config{Addr: cfg.VaultAddr, CACert: cfg.VaultCACert, Timeout: cfg.VaultTimeout})
	if err != nil {
		return nil, nil, err
	}
	ident, err := vc.NewService(vault.AppRole{Mount: cfg.AppRoleMount, RoleID: cfg.AppRoleRoleID,
		SecretID: cfg.AppRoleSecretID, SecretIDFile: cfg.AppRoleSecretIDFile}, log)
	if err != nil {
		return nil, nil, err
	}
	return vc, ident, nil
}
