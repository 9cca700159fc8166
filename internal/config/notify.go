package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	// Quiet hours name a time zone (CERTPORTAL_NOTIFY_TIMEZONE); the
	// container image has no /usr/share/zoneinfo, so the zone database
	// travels in the binary.
	_ "time/tzdata"
)

// QuietHours is a parsed quiet-hours window (notify.QuietHours).
type QuietHours struct {
	Start, End int // minutes after midnight; Start > End wraps past midnight
	Loc        *time.Location
	Channels   []string // email, webhook, helpdesk
}

// DefaultQuietChannels are held unless CERTPORTAL_NOTIFY_QUIET_CHANNELS
// says otherwise: the messages that reach a person's phone. The helpdesk
// address (a queue, and the escalation) is not held.
var DefaultQuietChannels = []string{"email", "webhook"}

// ParseQuietHours reads window "22:00-07:00" in time zone tz ("" is UTC)
// for channels (comma-separated; "" is DefaultQuietChannels). An empty
// window is no quiet hours (nil, nil).
func ParseQuietHours(window, tz, channels string) (*QuietHours, error) {
	window = strings.TrimSpace(window)
	if window == "" {
		return nil, nil
	}
	from, to, ok := strings.Cut(window, "-")
	if !ok {
		return nil, fmt.Errorf("notify-quiet-hours %q: want HH:MM-HH:MM, like 22:00-07:00", window)
	}
	start, err := clockMinutes(from)
	if err != nil {
		return nil, fmt.Errorf("notify-quiet-hours %q: %w", window, err)
	}
	end, err := clockMinutes(to)
	if err != nil {
		return nil, fmt.Errorf("notify-quiet-hours %q: %w", window, err)
	}
	if start == end || (start == 0 && end == 24*60) || start == 24*60 {
		return nil, fmt.Errorf("notify-quiet-hours %q: want a window that starts and ends on different times of day", window)
	}
	tz = strings.TrimSpace(tz)
	if tz == "" {
		tz = "UTC"
	}
	loc, err := time.LoadLocation(tz)
	if err != nil || tz == "Local" {
		// Local would make the window depend on each host's TZ, which
		// replicas need not share.
		return nil, fmt.Errorf("notify-timezone %q: want an IANA zone name like Asia/Seoul or UTC", tz)
	}
	q := &QuietHours{Start: start, End: end, Loc: loc, Channels: DefaultQuietChannels}
	if strings.TrimSpace(channels) != "" {
		q.Channels = nil
		for _, c := range strings.Split(channels, ",") {
			c = strings.TrimSpace(c)
			switch c {
			case "email", "webhook", "helpdesk":
				q.Channels = append(q.Channels, c)
			case "":
			default:
				return nil, fmt.Errorf("notify-quiet-channels: %q is not a channel (email, webhook, helpdesk)", c)
			}
		}
		if len(q.Channels) == 0 {
			return nil, errors.New("notify-quiet-channels: name at least one of email, webhook, helpdesk")
		}
	}
	return q, nil
}

func clockMinutes(s string) (int, error) {
	s = strings.TrimSpace(s)
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(h) < 1 || len(h) > 2 || len(m) != 2 || hh < 0 || hh > 24 || mm < 0 || mm > 59 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("%q is not a time of day like 07:00", s)
	}
	return hh*60 + mm, nil
}

// metadataKey is what Vault accepts as an entity metadata key, kept short.
var metadataKey = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// validEmailMetadata checks CERTPORTAL_NOTIFY_EMAIL_METADATA ("" is off).
func validEmailMetadata(key string) error {
	if key == "" || metadataKey.MatchString(key) {
		return nil
	}
	return fmt.Errorf("notify-email-metadata %q: want a Vault entity metadata key like email", key)
}
