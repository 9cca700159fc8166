package ui

import (
	"context"
	"net/http"
	"time"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/notify"
	"github.com/certportal/certportal/internal/store"
)

// Reminders is what the pages need of the reminder outbox: the language a
// user last chose (reminders are sent in it) and the reminders sent.
type Reminders interface {
	SetUserLanguage(ctx context.Context, username, lang string, at time.Time) error
	ListNotifications(ctx context.Context, username string, limit int) ([]*store.Notification, error)
}

// reminderView is one sent reminder as the dashboard and the helpdesk user
// page list it.
type reminderView struct {
	Serial    string
	Threshold string
	Channel   string
	SentAt    time.Time
}

// maxReminders bounds the list: a user has a few certificates, each with
// a few thresholds and channels.
const maxReminders = 30

// rememberLanguage records lang as username's last choice. A failure costs
// only the language of a later reminder, so it is logged, not shown.
func (s *Server) rememberLanguage(r *http.Request, username string, lang i18n.Lang) {
	if s.Reminders == nil || username == "" {
		return
	}
	if err := s.Reminders.SetUserLanguage(r.Context(), username, string(lang), s.Now()); err != nil {
		s.Logger.WarnContext(r.Context(), "record user language", "user", username, "err", err)
	}
}

// sentReminders lists username's sent reminders for p, newest first; a
// store failure leaves the list out rather than failing the page.
func (s *Server) sentReminders(r *http.Request, p *page, username string) {
	if s.Reminders == nil {
		return
	}
	list, err := s.Reminders.ListNotifications(r.Context(), username, maxReminders)
	if err != nil {
		s.Logger.WarnContext(r.Context(), "list reminders", "user", username, "err", err)
		return
	}
	for _, n := range list {
		if n.State != store.NotifySent {
			continue
		}
		th := i18n.T(p.Lang, "notify.threshold_expired")
		if n.Threshold != store.ThresholdExpired {
			th = i18n.T(p.Lang, "notify.threshold", notify.Duration(p.Lang, n.Threshold))
		}
		p.Reminders = append(p.Reminders, reminderView{Serial: n.Serial, Threshold: th,
			Channel: i18n.T(p.Lang, "notify.channel."+n.Channel), SentAt: n.SentAt})
	}
}
