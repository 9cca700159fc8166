// Command devvault runs a real, in-memory HashiCorp Vault core on loopback for
// development and the certportal integration tests.
//
// It is the Vault server's own core (github.com/hashicorp/vault/vault) with the
// pki, userpass and approle backends compiled in — not a fake — so the tests see
// Vault's real policy checks, templated role domains and CRLs. State lives in
// memory and is gone when the process exits. Never use it for anything real:
// the root token and unseal key are written in clear to the -env-file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/builtin/credential/approle"
	"github.com/hashicorp/vault/builtin/credential/userpass"
	"github.com/hashicorp/vault/builtin/logical/pki"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/internalshared/configutil"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/physical/inmem"
	"github.com/hashicorp/vault/vault"
	vaultseal "github.com/hashicorp/vault/vault/seal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devvault:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devvault", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8200", "loopback address to listen on (port 0 picks a free port)")
	envFile := fs.String("env-file", "", "write VAULT_ADDR, VAULT_TOKEN and VAULT_UNSEAL_KEY lines to this file once ready")
	logLevel := fs.String("log-level", "warn", "Vault core log level (trace, debug, info, warn, error)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", *listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		// A dev core with a root token in a file must never face a network.
		return fmt.Errorf("-listen %q: only loopback addresses are allowed", *listen)
	}

	logger := hclog.New(&hclog.LoggerOptions{Name: "devvault", Level: hclog.LevelFromString(*logLevel), Output: stderr})
	core, rootToken, unsealKey, err := newCore(ctx, logger)
	if err != nil {
		return err
	}
	defer core.Shutdown()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	addr := "http://" + ln.Addr().String()
	handler := vaulthttp.Handler.Handler(&vault.HandlerProperties{
		Core:           core,
		ListenerConfig: &configutil.Listener{Type: "tcp", Address: ln.Addr().String(), TLSDisable: true},
	})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	if *envFile != "" {
		if err := writeEnvFile(*envFile, addr, rootToken, unsealKey); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "devvault: Vault %s core listening on %s (in memory, dev only)\n", vaultVersion(), addr)

	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// newCore builds, initialises and unseals an in-memory core the way `vault
// server -dev` does, with only the backends certportal uses.
func newCore(ctx context.Context, logger hclog.Logger) (core *vault.Core, rootToken, unsealKey string, err error) {
	phys, err := inmem.NewInmem(nil, logger)
	if err != nil {
		return nil, "", "", fmt.Errorf("storage: %w", err)
	}
	secrets := map[string]logical.Factory{"pki": pki.Factory}
	creds := map[string]logical.Factory{"userpass": userpass.Factory, "approle": approle.Factory}
	core, err = vault.NewCore(&vault.CoreConfig{
		Physical:           phys,
		LogicalBackends:    secrets,
		CredentialBackends: creds,
		BuiltinRegistry:    newRegistry(secrets, creds),
		DisableMlock:       true,
		Logger:             logger,
	})
	if err != nil {
		return nil, "", "", fmt.Errorf("new core: %w", err)
	}

	barrier := &vault.SealConfig{SecretShares: 1, SecretThreshold: 1, Name: "shamir"}
	if core.SealAccess().StoredKeysSupported() != vaultseal.StoredKeysNotSupported {
		barrier.StoredShares = 1
	}
	init, err := core.Initialize(ctx, &vault.InitParams{BarrierConfig: barrier})
	if err != nil {
		return nil, "", "", fmt.Errorf("initialize: %w", err)
	}
	if core.SealAccess().StoredKeysSupported() == vaultseal.StoredKeysSupportedGeneric {
		err = core.UnsealWithStoredKeys(ctx)
	} else {
		var ok bool
		ok, err = core.Unseal(append([]byte(nil), init.SecretShares[0]...))
		if err == nil && !ok {
			err = errors.New("still sealed")
		}
	}
	if err != nil {
		return nil, "", "", fmt.Errorf("unseal: %w", err)
	}
	key := ""
	if len(init.SecretShares) > 0 {
		key = fmt.Sprintf("%x", init.SecretShares[0])
	}
	// Post-unseal setup (mount table, token store) finishes asynchronously.
	deadline := time.Now().Add(30 * time.Second)
	for {
		standby, err := core.Standby()
		if err == nil && !standby && !core.Sealed() {
			break
		}
		if time.Now().After(deadline) {
			return nil, "", "", errors.New("core did not become active")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return core, init.RootToken, key, nil
}

// writeEnvFile writes the file atomically (0600) so a watcher never reads half of it.
func writeEnvFile(path, addr, token, unsealKey string) error {
	content := fmt.Sprintf("VAULT_ADDR=%s\nVAULT_TOKEN=%s\nVAULT_UNSEAL_KEY=%s\n", addr, token, unsealKey)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".devvault-env-*")
	if err != nil {
		return fmt.Errorf("env file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return fmt.Errorf("env file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("env file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("env file: %w", err)
	}
	return nil
}

// registry is the plugin catalog's view of the compiled-in backends, so that
// `vault secrets enable pki` and `vault auth enable userpass` resolve to them.
type registry struct {
	secrets, creds map[string]logical.Factory
}

func newRegistry(secrets, creds map[string]logical.Factory) *registry {
	return &registry{secrets: secrets, creds: creds}
}

func (r *registry) table(t consts.PluginType) map[string]logical.Factory {
	switch t {
	case consts.PluginTypeSecrets:
		return r.secrets
	case consts.PluginTypeCredential:
		return r.creds
	}
	return nil
}

func (r *registry) Contains(name string, t consts.PluginType) bool {
	_, ok := r.table(t)[name]
	return ok
}

func (r *registry) Get(name string, t consts.PluginType) (func() (interface{}, error), bool) {
	f, ok := r.table(t)[name]
	if !ok {
		return nil, false
	}
	return func() (interface{}, error) { return f, nil }, true
}

func (r *registry) Keys(t consts.PluginType) []string {
	var keys []string
	for k := range r.table(t) {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (r *registry) DeprecationStatus(name string, t consts.PluginType) (consts.DeprecationStatus, bool) {
	if r.Contains(name, t) {
		return consts.Supported, true
	}
	return consts.Unknown, false
}

func (r *registry) IsBuiltinEntPlugin(string, consts.PluginType) bool { return false }

func vaultVersion() string {
	return strings.TrimPrefix(vaultVersionString, "v")
}
