package nginxcerts

import (
	"context"
	"errors"
	"log/slog"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// WatchOptions configure Watch.
type WatchOptions struct {
	// CRLInterval is how often the CRLs are fetched again: the longest a
	// revocation takes to reach Nginx. Watch wakes earlier when a CRL needs
	// rebuilding or the server certificate renewing before then.
	CRLInterval time.Duration
	// RetryInterval is the wait after a failed sync or reload; 0 means the
	// shorter of CRLInterval and 30s.
	RetryInterval time.Duration
	// Reload makes Nginx read the files again (nil: nobody to tell). It runs
	// after every sync that changed a file, and after a failed reload again
	// until one succeeds, changed or not: Nginx may still hold old files.
	Reload func(context.Context) error
	Log    *slog.Logger
	// OnSync, when set, hears how each sync ended (res is nil when err is
	// not) and OnReload each reload: the watcher's metrics listen here.
	OnSync   func(res *Result, err error, at time.Time)
	OnReload func(err error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Watch runs Sync until ctx ends, then returns nil. A bad configuration is
// returned at once; Vault or disk failures are logged and retried, since the
// files from the last good run keep Nginx working meanwhile.
func Watch(ctx context.Context, c *vaultapi.Client, cfg Config, o WatchOptions) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := CheckDir(cfg.Dir); err != nil {
		return err
	}
	if o.CRLInterval <= 0 {
		return errors.New("watch: CRL interval must be positive")
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = min(o.CRLInterval, 30*time.Second)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	reloadPending := false
	for {
		// Before the sync, so an expiring periodic token is renewed even
		// while Vault refuses everything else.
		if tok, err := RenewToken(ctx, c); err != nil {
			if ctx.Err() != nil {
				return nil // stopped while renewing: no failure to report
			}
			log.Error("renew Vault token", "err", err)
		} else if tok.Renewed {
			log.Info("renewed Vault token", "expires", tok.Expires.UTC())
		} else if !tok.Renewable && !tok.Expires.IsZero() && time.Until(tok.Expires) < 24*time.Hour {
			log.Warn("Vault token cannot be renewed and expires soon; after that nothing here is refreshed", "expires", tok.Expires.UTC())
		}
		now := o.Now()
		var wait time.Duration
		res, err := Sync(ctx, c, cfg, now)
		if ctx.Err() == nil && o.OnSync != nil {
			o.OnSync(res, err, now)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Error("refresh Nginx files", "err", err)
			wait = o.RetryInterval
		default:
			LogResult(log, res)
			reloadPending = reloadPending || res.Changed()
			wait = nextWake(res, now, o.CRLInterval)
		}
		if reloadPending && o.Reload != nil {
			err := o.Reload(ctx)
			if ctx.Err() == nil && o.OnReload != nil {
				o.OnReload(err)
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				log.Error("reload Nginx", "err", err)
				wait = min(wait, o.RetryInterval)
			} else {
				log.Info("reloaded Nginx")
				reloadPending = false
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// nextWake is how long to sleep after a successful sync: the CRL interval,
// or less when a CRL needs rebuilding or the server certificate renewing
// sooner. A certificate or CRL that is due the moment Vault made it (this
// clock and Vault's disagree) waits for the interval, so Watch cannot ask
// Vault for one per second; and no wait is shorter than a second.
func nextWake(res *Result, now time.Time, interval time.Duration) time.Duration {
	wait := interval
	var due []time.Time
	if len(res.Rotated) == 0 || res.CRLRefreshBy.After(now) {
		due = append(due, res.CRLRefreshBy)
	}
	if !res.Issued || res.RenewAt.After(now) {
		due = append(due, res.RenewAt)
	}
	for _, t := range due {
		if !t.IsZero() {
			wait = min(wait, max(t.Sub(now), time.Second))
		}
	}
	return wait
}

// LogResult logs what a sync changed; an unchanged run logs at debug level
// only, so a watch every few minutes stays quiet. It never logs key material.
func LogResult(log *slog.Logger, res *Result) {
	for _, m := range res.Rotated {
		log.Info("rebuilt CRL in Vault before it expires", "mount", m)
	}
	for _, w := range res.Warnings {
		log.Warn(w)
	}
	if res.Issued {
		log.Info("issued server certificate", "serial", res.ServerSerial, "subject", res.Server.Subject.String(),
			"not_after", res.Server.NotAfter.UTC(), "renew_at", res.RenewAt.UTC(), "reason", res.IssueReason)
	}
	for _, f := range res.Files {
		if f.Changed {
			log.Info("wrote file", "path", f.Path)
		}
	}
	if !res.Changed() {
		log.Debug("Nginx files up to date", "crl_next_update", res.CRLNextUpdate.UTC(), "server_renew_at", res.RenewAt.UTC())
	}
}
