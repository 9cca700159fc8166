package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/nginxcerts"
)

func runNginxCerts(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nginx-certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := nginxcerts.Config{
		PKIMount:    nginxcerts.DefaultPKIMount,
		RootMount:   nginxcerts.DefaultRootMount,
		ServerMount: nginxcerts.DefaultServerMount,
		Role:        nginxcerts.DefaultRole,
	}
	fs.StringVar(&cfg.Dir, "out-dir", "", "existing directory to write "+nginxcerts.ServerCertFile+", "+nginxcerts.ServerKeyFile+", "+nginxcerts.ClientCAFile+" and "+nginxcerts.CRLFile+" to (required)")
	fs.StringVar(&cfg.ServerName, "server-name", "", "DNS name of the Nginx server certificate; the server role must allow it (required)")
	ipSANs := fs.String("ip-sans", "", "comma-separated IP addresses to add to the server certificate, e.g. 127.0.0.1")
	fs.DurationVar(&cfg.TTL, "ttl", 0, "server certificate validity; 0 for the role's default")
	fs.StringVar(&cfg.PKIMount, "pki-mount", cfg.PKIMount, "PKI mount that issues users' certificates: client CA chain, CRL")
	fs.StringVar(&cfg.ServerMount, "server-mount", cfg.ServerMount, "PKI mount of the server role (setup's --server-mount)")
	fs.StringVar(&cfg.RootMount, "root-mount", cfg.RootMount, "PKI mount of the root CA, whose CRL Nginx needs too")
	fs.StringVar(&cfg.Role, "role", cfg.Role, "PKI role the server certificate is issued from")
	watch := fs.Bool("watch", false, "keep running: refresh the CRLs every --crl-interval, renew the server certificate when a third of its life is left")
	crlInterval := fs.Duration("crl-interval", 5*time.Minute, "with --watch, how often to fetch the CRLs: the longest a revocation takes to reach Nginx")
	reloadCmd := fs.String("reload-cmd", "", `shell command run after files changed, e.g. "nginx -s reload"`)
	metricsListen := fs.String("metrics-listen", getenv("CERTPORTAL_NGINX_METRICS_LISTEN"),
		"with --watch, address to serve Prometheus metrics on at /metrics, e.g. 127.0.0.1:9465: the server certificate's and the CRL's expiry (CERTPORTAL_NGINX_METRICS_LISTEN; default off)")
	vaultAddr := fs.String("vault-addr", getenv("VAULT_ADDR"), "Vault address (VAULT_ADDR)")
	vaultCA := fs.String("vault-cacert", getenv("VAULT_CACERT"), "CA file for Vault's TLS certificate (VAULT_CACERT)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: certportal nginx-certs --out-dir DIR --server-name NAME [flags]")
		fmt.Fprintln(fs.Output(), "\nWrites what Nginx needs from Vault to admit portal certificates: its server certificate and key,\n"+
			"the client CA chain and the CRLs of every CA in it. Needs VAULT_ADDR and VAULT_TOKEN, a token\n"+
			"with the certportal-nginx policy that `certportal setup` writes.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "certportal nginx-certs: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	if *ipSANs != "" {
		for _, ip := range strings.Split(*ipSANs, ",") {
			cfg.IPSANs = append(cfg.IPSANs, strings.TrimSpace(ip))
		}
	}
	if cfg.Dir != "" {
		// Absolute, so that the paths printed can go straight into nginx-config.
		abs, err := filepath.Abs(cfg.Dir)
		if err != nil {
			return fmt.Errorf("nginx-certs: out dir: %w", err)
		}
		cfg.Dir = abs
	}
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if *watch && *crlInterval < time.Second {
		errs = append(errs, fmt.Errorf("crl interval %s: want at least 1s", *crlInterval))
	}
	if *metricsListen != "" && !*watch {
		errs = append(errs, errors.New("metrics listen: only with --watch (a single run has nothing to serve them from)"))
	}
	token := getenv("VAULT_TOKEN")
	if *vaultAddr == "" || token == "" {
		errs = append(errs, errors.New("VAULT_ADDR and VAULT_TOKEN (a token with the certportal-nginx policy) must be set"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nginx-certs: %w", err)
	}
	if err := nginxcerts.CheckDir(cfg.Dir); err != nil {
		return fmt.Errorf("nginx-certs: %w", err)
	}

	c, err := nginxVaultClient(*vaultAddr, *vaultCA, token)
	if err != nil {
		return fmt.Errorf("nginx-certs: %w", err)
	}
	var reload func(context.Context) error
	if *reloadCmd != "" {
		reload = func(ctx context.Context) error { return runReload(ctx, *reloadCmd, stderr) }
	}

	if *watch {
		log := slog.New(slog.NewTextHandler(stderr, nil))
		o := nginxcerts.WatchOptions{CRLInterval: *crlInterval, Reload: reload, Log: log}
		if *metricsListen != "" {
			m := metrics.NewNginx()
			stop, err := serveNginxMetrics(*metricsListen, m, log)
			if err != nil {
				return fmt.Errorf("nginx-certs: %w", err)
			}
			defer stop()
			o.OnSync = func(res *nginxcerts.Result, err error, at time.Time) {
				if err != nil {
					m.SyncFailed()
					return
				}
				var notAfter time.Time
				if res.Server != nil {
					notAfter = res.Server.NotAfter
				}
				m.Synced(notAfter, res.CRLNextUpdate, at)
			}
			o.OnReload = func(err error) {
				if err != nil {
					m.ReloadFailed()
				}
			}
		}
		log.Info("watching Vault for Nginx files", "dir", cfg.Dir, "server_name", cfg.ServerName, "crl_interval", *crlInterval)
		return nginxcerts.Watch(ctx, c, cfg, o)
	}

	res, err := nginxcerts.Sync(ctx, c, cfg, time.Now())
	if err != nil {
		return fmt.Errorf("nginx-certs: %w", err)
	}
	printSyncResult(stdout, stderr, res)
	if res.Changed() && reload != nil {
		if err := reload(ctx); err != nil {
			return fmt.Errorf("nginx-certs: files written, but %w", err)
		}
		fmt.Fprintln(stdout, "nginx-certs: reloaded Nginx.")
	}
	return nil
}

// serveNginxMetrics serves the watcher's metrics at /metrics on addr (and
// nothing else there) until stop is called. The address it got is logged,
// so that a port of 0 can be found.
func serveNginxMetrics(addr string, m *metrics.Nginx, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

func nginxVaultClient(addr, caCert, token string) (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	cfg.Address = addr
	// pki/issue is not idempotent: a retried request could mint a second
	// server certificate nobody uses.
	cfg.MaxRetries = 0
	cfg.Timeout = 30 * time.Second
	if caCert != "" {
		if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACert: caCert}); err != nil {
			return nil, fmt.Errorf("vault tls: %w", err)
		}
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.SetToken(token)
	return c, nil
}

func printSyncResult(w, warnings io.Writer, res *nginxcerts.Result) {
	for _, m := range res.Rotated {
		fmt.Fprintf(w, "  rebuilt  CRL of %s in Vault (it was close to expiry)\n", m)
	}
	for _, f := range res.Files {
		mark := "ok     "
		if f.Changed {
			mark = "changed"
		}
		fmt.Fprintf(w, "  %s  %s\n", mark, f.Path)
	}
	if res.Issued {
		fmt.Fprintf(w, "nginx-certs: issued server certificate %s for %s, valid until %s (%s).\n",
			res.ServerSerial, res.Server.Subject.CommonName, res.Server.NotAfter.UTC().Format(time.RFC3339), res.IssueReason)
	}
	fmt.Fprintf(w, "nginx-certs: renew the server certificate after %s; refresh the CRL before %s.\n",
		res.RenewAt.UTC().Format(time.RFC3339), res.CRLNextUpdate.UTC().Format(time.RFC3339))
	for _, warn := range res.Warnings {
		fmt.Fprintf(warnings, "nginx-certs: warning: %s\n", warn)
	}
}

// runReload runs the operator's reload command through the shell, so that
// "nginx -t && nginx -s reload" works as typed. The Vault token is left out
// of its environment: reloading Nginx never needs it.
func runReload(ctx context.Context, command string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_TOKEN=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("reload command %q: %w", command, err)
	}
	return nil
}
