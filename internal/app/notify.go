package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/notify"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/vault"
)

// EntityReader is what owners' addresses are read with: the portal's own
// Vault identity (*vault.Service), whose policy may look up an entity by
// its userpass alias (setup writes it for the offboarding sweep).
type EntityReader interface {
	MountAccessor(ctx context.Context, path string) (string, error)
	LookupEntityByAlias(ctx context.Context, accessor, name string) (*vault.Entity, error)
}

// BuildNotifier makes the reminder runner from the configuration; nil (and
// no error) when no channel is configured. serve and `notify --once` share
// it, so both read the same settings.
//
// ident reads owners' addresses from their Vault entities when
// CERTPORTAL_NOTIFY_EMAIL_METADATA is set; nil otherwise.
func BuildNotifier(cfg config.Config, st store.Store, ident EntityReader, m *metrics.Metrics, log *slog.Logger) (*notify.Runner, error) {
	return buildNotifier(cfg, st, ident, m, log, nil)
}

// buildNotifier is BuildNotifier on the portal's clock now (nil: time.Now).
func buildNotifier(cfg config.Config, st store.Store, ident EntityReader, m *metrics.Metrics, log *slog.Logger, now func() time.Time) (*notify.Runner, error) {
	if !cfg.NotifyEnabled() {
		return nil, nil
	}
	o := notify.Options{
		Thresholds: cfg.NotifyThresholds, Expired: cfg.NotifyExpired, EmailDomain: cfg.EmailDomain,
		HelpdeskEmail: cfg.HelpdeskEmail, PublicURL: cfg.PublicURL, Metrics: m, Log: log, Now: now,
	}
	if cfg.SMTPURL != "" {
		sc, err := notify.ParseSMTPURL(cfg.SMTPURL, cfg.MailFrom, cfg.SMTPCACert)
		if err != nil {
			return nil, err
		}
		o.Email = &notify.SMTP{Cfg: sc}
	}
	if q := cfg.NotifyQuiet; q != nil {
		o.Quiet = &notify.QuietHours{Start: q.Start, End: q.End, Loc: q.Loc, Channels: q.Channels}
	}
	if cfg.NotifyEmailMetadata != "" && cfg.SMTPURL != "" {
		if ident == nil {
			return nil, errors.New("reminders: CERTPORTAL_NOTIFY_EMAIL_METADATA needs the portal's Vault identity")
		}
		o.Addresses = &entityAddresses{v: ident, mount: cfg.UserpassMount, key: cfg.NotifyEmailMetadata}
	}
	if cfg.NotifyWebhook != "" {
		o.Webhook = &notify.Webhook{URL: cfg.NotifyWebhook, Format: cfg.NotifyWebhookFormat, Secret: cfg.NotifyWebhookSecret}
	}
	r, err := notify.New(st, o)
	if err != nil {
		return nil, fmt.Errorf("reminders: %w", err)
	}
	return r, nil
}

// notifySettings are the reminder settings the start event records: no
// password, no webhook URL, no secret.
func notifySettings(cfg config.Config) map[string]string {
	if !cfg.NotifyEnabled() {
		return map[string]string{"notify": "off"}
	}
	s := map[string]string{"notify": "on", "notify_thresholds": fmt.Sprint(cfg.NotifyThresholds),
		"notify_expired": fmt.Sprint(cfg.NotifyExpired), "notify_webhook": fmt.Sprint(cfg.NotifyWebhook != ""),
		"notify_webhook_format": cfg.NotifyWebhookFormat, "helpdesk_email": fmt.Sprint(cfg.HelpdeskEmail != ""),
		"notify_email_metadata": cfg.NotifyEmailMetadata, "notify_quiet_hours": "off"}
	if q := cfg.NotifyQuiet; q != nil {
		s["notify_quiet_hours"] = (&notify.QuietHours{Start: q.Start, End: q.End, Loc: q.Loc, Channels: q.Channels}).String()
	}
	if sc, err := notify.ParseSMTPURL(cfg.SMTPURL, cfg.MailFrom, ""); err == nil && cfg.SMTPURL != "" {
		s["smtp"] = sc.String()
	}
	return s
}

// entityAddresses reads an owner's address from a metadata field of the
// Vault entity behind their userpass alias. Entity metadata is written by
// Vault operators (or their identity sync), not by users: a user cannot
// point their reminders, or anyone else's, elsewhere.
type entityAddresses struct {
	v          EntityReader
	mount, key string

	mu       sync.Mutex
	accessor string // the mount's accessor, read once
}

func (a *entityAddresses) Address(ctx context.Context, username string) (string, error) {
	a.mu.Lock()
	acc := a.accessor
	a.mu.Unlock()
	if acc == "" {
		var err error
		if acc, err = a.v.MountAccessor(ctx, a.mount); err != nil {
			return "", err
		}
		a.mu.Lock()
		a.accessor = acc
		a.mu.Unlock()
	}
	e, err := a.v.LookupEntityByAlias(ctx, acc, username)
	if err != nil {
		return "", err
	}
	if e == nil {
		return "", nil // never logged in: no entity yet
	}
	return strings.TrimSpace(e.Metadata[a.key]), nil
}

// OffboardNotifyChannels are the channels a held offboarding sweep is told
// on: the helpdesk address, when reminders can reach it.
func OffboardNotifyChannels(cfg config.Config) []string {
	if cfg.HelpdeskEmail != "" && cfg.SMTPURL != "" {
		return []string{notify.ChannelHelpdesk}
	}
	return nil
}
