package app

import (
	"fmt"
	"log/slog"

	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/notify"
	"github.com/certportal/certportal/internal/store"
)

// BuildNotifier makes the reminder runner from the configuration; nil (and
// no error) when no channel is configured. serve and `notify --once` share
// it, so both read the same settings.
func BuildNotifier(cfg config.Config, st store.Store, m *metrics.Metrics, log *slog.Logger) (*notify.Runner, error) {
	if !cfg.NotifyEnabled() {
		return nil, nil
	}
	o := notify.Options{
		Thresholds: cfg.NotifyThresholds, Expired: cfg.NotifyExpired, EmailDomain: cfg.EmailDomain,
		HelpdeskEmail: cfg.HelpdeskEmail, PublicURL: cfg.PublicURL, Metrics: m, Log: log,
	}
	if cfg.SMTPURL != "" {
		sc, err := notify.ParseSMTPURL(cfg.SMTPURL, cfg.MailFrom, cfg.SMTPCACert)
		if err != nil {
			return nil, err
		}
		o.Email = &notify.SMTP{Cfg: sc}
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
		"notify_webhook_format": cfg.NotifyWebhookFormat, "helpdesk_email": fmt.Sprint(cfg.HelpdeskEmail != "")}
	if sc, err := notify.ParseSMTPURL(cfg.SMTPURL, cfg.MailFrom, ""); err == nil && cfg.SMTPURL != "" {
		s["smtp"] = sc.String()
	}
	return s
}
