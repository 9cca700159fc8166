package config

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// offboardFlags declares the offboarding sweep's settings; the share is
// returned as text for Load to parse after the flags.
func (c *Config) offboardFlags(fs *flag.FlagSet, getenv func(string) string) *string {
	fs.DurationVar(&c.OffboardInterval, "offboard-interval", envDuration(getenv, "CERTPORTAL_OFFBOARD_INTERVAL", c.OffboardInterval),
		"how often serve sweeps for users Vault no longer admits and revokes their certificates; 0: never (CERTPORTAL_OFFBOARD_INTERVAL)")
	share := getenv("CERTPORTAL_OFFBOARD_MAX_SHARE")
	if share == "" {
		share = strconv.FormatFloat(c.OffboardMaxShare*100, 'f', -1, 64) + "%"
	}
	s := fs.String("offboard-max-share", share,
		"a sweep that would revoke more than this share of the users with active certificates holds instead, until `certportal offboard --once --confirm` (CERTPORTAL_OFFBOARD_MAX_SHARE)")
	fs.IntVar(&c.OffboardMaxCount, "offboard-max-count", envInt(getenv, "CERTPORTAL_OFFBOARD_MAX_COUNT", c.OffboardMaxCount),
		"a sweep that would revoke the certificates of more users than this holds instead (CERTPORTAL_OFFBOARD_MAX_COUNT)")
	return s
}

// ParseShare reads a percentage such as "10%" or "10" (a bare number is a
// percentage too, so "0.1" is a tenth of a percent, not ten) as a fraction.
func ParseShare(s string) (float64, error) {
	v := strings.TrimSuffix(strings.TrimSpace(s), "%")
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f > 100 {
		return 0, fmt.Errorf("%q: want a percentage above 0 and at most 100, like 10%%", s)
	}
	return f / 100, nil
}

func (c Config) validateOffboard() error {
	if c.OffboardInterval < 0 {
		return errors.New("offboard-interval: want a duration, 0 to switch the sweep off (CERTPORTAL_OFFBOARD_INTERVAL)")
	}
	if c.OffboardMaxShare <= 0 || c.OffboardMaxShare > 1 {
		return errors.New("offboard-max-share: want a percentage above 0 and at most 100 (CERTPORTAL_OFFBOARD_MAX_SHARE)")
	}
	if c.OffboardMaxCount < 1 {
		return errors.New("offboard-max-count: want 1 or more (CERTPORTAL_OFFBOARD_MAX_COUNT)")
	}
	return nil
}
