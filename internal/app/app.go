// Package app wires certportal's adapters — store, sessions, Vault, UI —
// into one http.Handler; serve, the tests and the benchmarks share it.
package app

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/session"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/postgres"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/ui"
	"github.com/certportal/certportal/internal/vault"
)

// Options are what Build takes besides the configuration: things a test
// chooses and an operator never does.
type Options struct {
	// Now is the portal's clock (nil: time.Now). Every part that reads the
	// time for sessions, token expiry, the trail and reminders reads this
	// one, so a test can set the portal's clock off Vault's.
	Now func() time.Time
}

// Handler is the portal's HTTP handler, and its metrics on their own for
// a listener apart (CERTPORTAL_METRICS_LISTEN; the portal's handler then
// answers /metrics with 404).
type Handler struct {
	http.Handler
	Metrics http.Handler
}

// Build wires every dependency explicitly; it is the one place that
// knows which adapters back the portal.
func Build(ctx context.Context, cfg config.Config, log *slog.Logger) (*Handler, func(), error) {
	return BuildWith(ctx, cfg, log, Options{})
}

// BuildWith is Build with o.
func BuildWith(ctx context.Context, cfg config.Config, log *slog.Logger, o Options) (*Handler, func(), error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	st, err := OpenStore(ctx, cfg.DB)
	if err != nil {
		return nil, nil, err
	}
	s := st
	key := cfg.SessionKey
	ephemeral := key == nil
	if ephemeral {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			st.Close()
			return nil, nil, fmt.Errorf("session key: %w", err)
		}
		log.Warn("no CERTPORTAL_SESSION_KEY set: using a random key; sessions end when the portal restarts and replicas cannot share them")
	}
	sessions, err := session.New(s, session.Options{Key: key, Secure: cfg.HTTPS(), Idle: cfg.SessionIdle, Absolute: cfg.SessionAbsolute,
		// One sweep at a time across replicas.
		Locker: s, Now: o.Now})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	vc, err := vault.New(vault.Config{Addr: cfg.VaultAddr, CACert: cfg.VaultCACert, Timeout: cfg.VaultTimeout, MaxInFlight: cfg.VaultMaxInFlight,
		Now: o.Now, SkewWarn: skewWarn(cfg.ClockSkewWarn), Logger: log})
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
	if cfg.AppRoleSecretIDFile != "" {
		// A rotation killed between writing and renaming left the new
		// secret id in a temporary file beside it.
		vault.RemoveStaleSecretTemps(filepath.Dir(cfg.AppRoleSecretIDFile), o.Now(), log)
	}
	m := metrics.New()
	m.VaultClockSkew(vc.ClockSkew)
	opts := PortalOptions(cfg)
	opts.Metrics = m
	opts.Now = o.Now
	svc := portal.NewService(vc, ident, s, opts, log)
	notifier, err := buildNotifier(cfg, s, ident, m, log, o.Now)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	settings := map[string]string{
		"vault_addr": cfg.VaultAddr, "pki_mount": cfg.PKIMount, "role": cfg.Role, "tls": fmt.Sprint(cfg.TLS()),
		"proxy_tls": fmt.Sprint(cfg.ProxyTLS), "trusted_proxies": fmt.Sprint(cfg.TrustedProxies),
		"max_active":         fmt.Sprint(cfg.MaxActive),
		"login_max_failures": fmt.Sprint(cfg.LoginMaxFailures), "login_failure_window": cfg.LoginFailureWindow.String(), "ttls": fmt.Sprint(cfg.TTLs),
		"login_network_limits": config.FormatNetworkLimits(cfg.LoginNetworkLimits), "login_user_max_failures": fmt.Sprint(cfg.LoginUserMaxFailures),
		"login_user_window": cfg.LoginUserWindow.String(), "login_failure_floor": cfg.LoginFailureFloor.String(),
		"login_device_max_failures": fmt.Sprint(cfg.LoginDeviceMaxFailures), "login_device_ttl": cfg.LoginDeviceTTL.String(),
		"helpdesk_issue_on_behalf": fmt.Sprint(cfg.HelpdeskIssueOnBehalf), "clock_skew_warn": cfg.ClockSkewWarn.String(),
		"offboard_interval": cfg.OffboardInterval.String(), "offboard_max_share": fmt.Sprintf("%g%%", cfg.OffboardMaxShare*100), "offboard_max_count": fmt.Sprint(cfg.OffboardMaxCount),
		"reconcile_interval": cfg.ReconcileInterval.String(), "reconcile_auto_revoke_after": cfg.ReconcileAutoRevokeAfter.String(),
		"reconcile_auto_revoke_max": fmt.Sprint(cfg.ReconcileAutoRevokeMax), "reconcile_auto_revoke_per_user_max": fmt.Sprint(cfg.ReconcileAutoRevokePerUserMax),
	}
	for k, v := range notifySettings(cfg) {
		settings[k] = v
	}
	if err := svc.RecordStart(ctx, settings); err != nil {
		// Fail closed from the start: a portal that cannot audit does not serve.
		st.Close()
		return nil, nil, fmt.Errorf("audit trail: %w", err)
	}
	h, err := ui.New(ui.Deps{Service: svc, Sessions: sessions, Store: s, Logger: log, Metrics: m, MetricsApart: cfg.MetricsListen != "",
		Secure: cfg.HTTPS(), TrustedProxies: cfg.TrustedProxies, MaxBodyBytes: cfg.MaxBodyBytes, SessionRecheck: cfg.SessionRecheck,
		WhoamiURL: cfg.ServiceURL, AccountName: cfg.AccountName, PublicURL: cfg.PublicURL,
		Reminders: s, Now: o.Now, VaultClock: vc})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		sweepSessions(sweepCtx, sessions, cfg.SessionSweep, log)
	}()
	go ident.Run(sweepCtx)
	// The service records what it counted or still owes the trail when it
	// stops, so the store closes only after it has.
	svcDone := make(chan struct{})
	go func() { svc.Run(sweepCtx); close(svcDone) }()
	inventoryDone := make(chan struct{})
	go func() {
		defer close(inventoryDone)
		refreshInventoryMetrics(sweepCtx, s, m, cfg.MetricsInterval, log)
	}()
	notifyDone := make(chan struct{})
	if notifier != nil {
		m.NotifyScheduled()
		go func() { notifier.Run(sweepCtx, cfg.NotifyInterval); close(notifyDone) }()
	} else {
		close(notifyDone)
		log.Info("expiry reminders off: set CERTPORTAL_SMTP_URL or CERTPORTAL_NOTIFY_WEBHOOK to send them")
	}
	if cfg.PublicURL == "" {
		log.Warn("no CERTPORTAL_PUBLIC_URL set: helpdesk enrolment links are built from the request's Host header, which the client chooses; set it to the portal's address as users reach it")
	}
	offboardDone := make(chan struct{})
	go func() { svc.RunOffboard(sweepCtx, cfg.OffboardInterval); close(offboardDone) }()
	// The AppRole secret id: its expiry as a metric, rotated at 2/3 of its
	// lifetime (internal/portal/rotate.go).
	rotateDone := make(chan struct{})
	go func() { svc.RunSecretRotation(sweepCtx); close(rotateDone) }()
	reconcileDone := make(chan struct{})
	go func() { svc.RunReconcile(sweepCtx, cfg.ReconcileInterval); close(reconcileDone) }()
	// Reconciliations an auditor asks for run here, in the background.
	requestedDone := make(chan struct{})
	go func() { svc.RunReconciler(sweepCtx); close(requestedDone) }()
	return &Handler{Handler: h, Metrics: m.Handler()}, func() {
		stopSweep()
		<-swept
		if ephemeral {
			endSessions(sessions, log)
		}
		<-svcDone
		<-notifyDone
		<-offboardDone
		<-inventoryDone
		<-rotateDone
		<-reconcileDone
		<-requestedDone
		st.Close()
	}, nil
}

// endSessions revokes, on a graceful shutdown, the Vault tokens of every
// session made under a random session key: no later process can read those
// sessions, so their tokens would live on unreachable until their TTL. A
// kill -9 leaves them to that TTL; a fixed key (CERTPORTAL_SESSION_KEY)
// lets the sessions, and their tokens, survive the restart instead.
func endSessions(m *session.Manager, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := m.EndAll(ctx)
	if err != nil {
		log.Error("shutdown: not every session's Vault token was revoked; the rest live until their TTL", "ended", n, "err", err)
		return
	}
	if n > 0 {
		log.Info("shutdown: ended sessions and revoked their Vault tokens (random session key)", "count", n)
	}
}

func sweepSessions(ctx context.Context, m *session.Manager, every time.Duration, log *slog.Logger) {
	if every <= 0 {
		every = 5 * time.Minute // a Config not made by config.Load
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := m.Sweep(ctx); errors.Is(err, session.ErrSweepBusy) {
				continue // another replica is sweeping
			} else if err != nil {
				log.Warn("sweep sessions", "err", err)
			} else if n > 0 {
				log.Debug("swept expired sessions", "count", n)
			}
		}
	}
}

// skewWarn maps CERTPORTAL_CLOCK_SKEW_WARN (0: off) onto the Vault
// client's setting (0: its default, negative: off).
func skewWarn(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// PortalOptions maps the configuration onto the domain service's options.
func PortalOptions(cfg config.Config) portal.Options {
	return portal.Options{
		UserpassMount: cfg.UserpassMount, PKIMount: cfg.PKIMount, Role: cfg.Role, EmailDomain: cfg.EmailDomain,
		UserPolicy: cfg.UserPolicy, HelpdeskPolicy: cfg.HelpdeskPolicy, AuditorPolicy: cfg.AuditorPolicy,
		TTLs: cfg.TTLs, DefaultTTL: cfg.DefaultTTL, MaxActive: cfg.MaxActive, ExpiringSoon: cfg.ExpiringSoon,
		OnBehalfRole: onBehalfRole(cfg), LoginMaxFailures: cfg.LoginMaxFailures, LoginFailureWindow: cfg.LoginFailureWindow,
		DeniedWindow: cfg.DeniedWindow, VaultTimeout: cfg.VaultTimeout, MFAPending: cfg.MFAPending,
		MFAStepUp: cfg.MFAStepUp, MFATOFU: cfg.MFATOFU, DeviceKeys: cfg.DeviceKeys,
		LoginNetworkLimits: networkLimits(cfg.LoginNetworkLimits), LoginUserMaxFailures: cfg.LoginUserMaxFailures,
		LoginUserWindow: cfg.LoginUserWindow, LoginFailureFloor: cfg.LoginFailureFloor, NameKey: nameKey(cfg.SessionKey),
		LoginDeviceMaxFailures: cfg.LoginDeviceMaxFailures, DeviceTTL: cfg.LoginDeviceTTL, DeviceKey: deviceKey(cfg.SessionKey),
		Offboard: portal.OffboardOptions{MaxShare: cfg.OffboardMaxShare, MaxCount: cfg.OffboardMaxCount,
			NotifyChannels: OffboardNotifyChannels(cfg)},
		Reconcile: portal.ReconcileOptions{AutoRevokeAfter: cfg.ReconcileAutoRevokeAfter,
			AutoRevokePerUserMax: cfg.ReconcileAutoRevokePerUserMax, AutoRevokeMax: cfg.ReconcileAutoRevokeMax},
		ReconcileConcurrency: cfg.ReconcileConcurrency,
	}
}

func networkLimits(ls []config.NetworkLimit) []portal.NetworkLimit {
	out := make([]portal.NetworkLimit, len(ls))
	for i, l := range ls {
		out[i] = portal.NetworkLimit{IPv6: l.IPv6, Bits: l.Bits, Max: l.Max}
	}
	return out
}

// nameKey derives the key of the hashes that stand for unknown usernames
// from the session key, which every replica shares: the same name gets the
// same hash on each, and across restarts. Without a session key the portal
// picks a random one (portal.NewService).
func nameKey(sessionKey []byte) []byte {
	if len(sessionKey) == 0 {
		return nil
	}
	m := hmac.New(sha256.New, sessionKey)
	m.Write([]byte("certportal login-name key v1"))
	return m.Sum(nil)
}

// deviceKey derives the key that signs device cookies from the session
// key, as nameKey does: replicas sharing the key honour each other's
// cookies, and a new session key invalidates them all.
func deviceKey(sessionKey []byte) []byte {
	if len(sessionKey) == 0 {
		return nil
	}
	m := hmac.New(sha256.New, sessionKey)
	m.Write([]byte("certportal device-cookie key v1"))
	return m.Sum(nil)
}

func onBehalfRole(cfg config.Config) string {
	if !cfg.HelpdeskIssueOnBehalf {
		return ""
	}
	return cfg.OnBehalfRole
}

// OpenStore picks the store adapter from the DSN: PostgreSQL for several
// replicas (postgres:// URLs), otherwise a SQLite file path.
func OpenStore(ctx context.Context, dsn string) (store.Store, error) {
	// Each branch returns through a nil check of its own: returning the
	// concrete pointer straight from a failed Open would give a non-nil
	// interface holding a nil *DB.
	if IsPostgres(dsn) {
		db, err := postgres.Open(ctx, dsn)
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	db, err := sqlite.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	return db, nil
}

// IsPostgres reports whether dsn names PostgreSQL rather than a SQLite file.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}
