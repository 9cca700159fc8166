package config

import (
	"io"
	"strings"
	"testing"
)

// TestLoadNotifySettings: quiet hours and the metadata key are read from
// the environment and refused, with the setting named, when malformed.
func TestLoadNotifySettings(t *testing.T) {
	load := func(extra map[string]string) (Config, error) {
		env := map[string]string{"CERTPORTAL_APPROLE_ROLE_ID": "r", "CERTPORTAL_APPROLE_SECRET_ID": "s",
			"CERTPORTAL_SMTP_URL": "smtp://mail.example.com:587", "CERTPORTAL_MAIL_FROM": "certportal@example.com",
			"CERTPORTAL_PUBLIC_URL": "https://certs.example.com"}
		for k, v := range extra {
			env[k] = v
		}
		return Load(nil, func(k string) string { return env[k] }, io.Discard)
	}
	c, err := load(nil)
	if err != nil || c.NotifyQuiet != nil || c.NotifyEmailMetadata != "" {
		t.Fatalf("defaults: quiet %+v metadata %q err %v", c.NotifyQuiet, c.NotifyEmailMetadata, err)
	}
	c, err = load(map[string]string{"CERTPORTAL_NOTIFY_QUIET_HOURS": "22:00-07:00", "CERTPORTAL_NOTIFY_TIMEZONE": "Asia/Seoul",
		"CERTPORTAL_NOTIFY_EMAIL_METADATA": "email"})
	if err != nil || c.NotifyQuiet == nil || c.NotifyQuiet.Start != 22*60 || c.NotifyQuiet.End != 7*60 ||
		c.NotifyQuiet.Loc.String() != "Asia/Seoul" || strings.Join(c.NotifyQuiet.Channels, ",") != "email,webhook" || c.NotifyEmailMetadata != "email" {
		t.Fatalf("set: quiet %+v metadata %q err %v", c.NotifyQuiet, c.NotifyEmailMetadata, err)
	}
	for env, want := range map[string]string{
		"CERTPORTAL_NOTIFY_QUIET_HOURS":    "notify-quiet-hours",
		"CERTPORTAL_NOTIFY_EMAIL_METADATA": "notify-email-metadata",
	} {
		if _, err := load(map[string]string{env: "e mail\n"}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s malformed: %v, want %q", env, err, want)
		}
	}
	if _, err := load(map[string]string{"CERTPORTAL_NOTIFY_QUIET_HOURS": "22:00-07:00", "CERTPORTAL_NOTIFY_TIMEZONE": "Nowhere/City"}); err == nil ||
		!strings.Contains(err.Error(), "notify-timezone") {
		t.Errorf("unknown zone: %v", err)
	}
}
