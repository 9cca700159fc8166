package notify

import (
	"fmt"
	"strings"
	"time"
)

// QuietHours is a daily window, in one time zone, in which messages on the
// held channels are not sent. They are not dropped either: a message that
// becomes due (or is due for a retry) inside the window stays pending and
// goes out at the first pass after the window ends, after the revoked and
// renewed checks, which then still apply.
//
// config.ParseQuietHours reads it from CERTPORTAL_NOTIFY_QUIET_HOURS,
// CERTPORTAL_NOTIFY_TIMEZONE and CERTPORTAL_NOTIFY_QUIET_CHANNELS.
type QuietHours struct {
	Start, End int // minutes after local midnight; Start > End wraps past midnight
	Loc        *time.Location
	// Channels are the channels held in the window. Channels not listed
	// (by default the helpdesk address: a ticket queue, and the escalation
	// should not wait for the morning) are sent as usual.
	Channels []string
}

// In reports whether t falls inside the window (start inclusive, end
// exclusive), on the wall clock of the zone.
func (q *QuietHours) In(t time.Time) bool {
	if q == nil {
		return false
	}
	lt := t.In(q.Loc)
	m := lt.Hour()*60 + lt.Minute()
	if q.Start < q.End {
		return m >= q.Start && m < q.End
	}
	return m >= q.Start || m < q.End
}

// Until is the end of the window t is in (t itself when it is in none):
// when held messages go out.
func (q *QuietHours) Until(t time.Time) time.Time {
	if !q.In(t) {
		return t
	}
	lt := t.In(q.Loc)
	end := time.Date(lt.Year(), lt.Month(), lt.Day(), q.End/60, q.End%60, 0, 0, q.Loc)
	if !end.After(t) {
		end = end.AddDate(0, 0, 1)
	}
	return end
}

// Holds reports whether channel is held.
func (q *QuietHours) Holds(channel string) bool {
	if q == nil {
		return false
	}
	for _, c := range q.Channels {
		if c == channel {
			return true
		}
	}
	return false
}

func (q *QuietHours) String() string {
	if q == nil {
		return "off"
	}
	return fmt.Sprintf("%02d:%02d-%02d:%02d %s (%s)", q.Start/60, q.Start%60, q.End/60, q.End%60, q.Loc, strings.Join(q.Channels, ","))
}
