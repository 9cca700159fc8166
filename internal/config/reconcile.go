package config

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/certportal/certportal/internal/portal"
)

// reconcileFlags declares the background reconciliation's settings.
func (c *Config) reconcileFlags(fs *flag.FlagSet, getenv func(string) string) {
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", envDuration(getenv, "CERTPORTAL_RECONCILE_INTERVAL", c.ReconcileInterval),
		"how often serve compares Vault's certificates with the inventory (one replica at a time); 0: never (CERTPORTAL_RECONCILE_INTERVAL)")
	fs.DurationVar(&c.ReconcileAutoRevokeAfter, "reconcile-auto-revoke-after", envDuration(getenv, "CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER", c.ReconcileAutoRevokeAfter),
		"revoke a user certificate Vault issued that the inventory does not know once it is older than this; 0: never (CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER)")
	fs.IntVar(&c.ReconcileAutoRevokeMax, "reconcile-auto-revoke-max", envInt(getenv, "CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX", c.ReconcileAutoRevokeMax),
		"a reconciliation that would revoke more certificates automatically than this (employees held alone not counted) holds everything and revokes none: a restored or wrong database looks like that (CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX)")
	fs.IntVar(&c.ReconcileAutoRevokePerUserMax, "reconcile-auto-revoke-per-user-max", envInt(getenv, "CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX", c.ReconcileAutoRevokePerUserMax),
		"an employee with more certificates to revoke automatically than this has theirs held and named (all but the newest CERTPORTAL_MAX_ACTIVE are still revoked: the portal never gave more), while other employees' are revoked; below CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX; unset: 5, or one less than that bound when it is 5 or less (CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX)")
}

// derivePerUserMax gives an unset per-employee bound its default
// (portal.DefaultAutoRevokePerUserMax), from the run's bound as set.
func (c *Config) derivePerUserMax(fs *flag.FlagSet, getenv func(string) string) {
	set := getenv("CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX") != ""
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "reconcile-auto-revoke-per-user-max" })
	if !set {
		c.ReconcileAutoRevokePerUserMax = portal.DefaultAutoRevokePerUserMax(c.ReconcileAutoRevokeMax)
	}
}

// MinAutoRevokeAfter is the shortest grace the automatic revocation may
// have with a given Vault timeout: an issuance under way ends within
// portal.IssueTimeout (two Vault calls and the record, 2×timeout + 10 s),
// Vault backdates a certificate's not_before by 30 s (the role setup
// writes), and a minute more covers clock skew between portal and Vault.
// Anything shorter could revoke a certificate whose record is still on its
// way to the inventory.
func MinAutoRevokeAfter(vaultTimeout time.Duration) time.Duration {
	return 2*vaultTimeout + 10*time.Second + 30*time.Second + time.Minute
}

func (c Config) validateReconcile() error {
	if c.ReconcileInterval < 0 || (c.ReconcileInterval > 0 && c.ReconcileInterval < time.Second) {
		return errors.New("reconcile-interval: want at least 1s, or 0 to switch the background reconciliation off (CERTPORTAL_RECONCILE_INTERVAL)")
	}
	if min := MinAutoRevokeAfter(c.VaultTimeout); c.ReconcileAutoRevokeAfter < 0 || (c.ReconcileAutoRevokeAfter > 0 && c.ReconcileAutoRevokeAfter < min) {
		return fmt.Errorf("reconcile-auto-revoke-after: want 0 (off) or at least %s with a Vault timeout of %s, so that no issuance still recording is taken (CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER)",
			min, c.VaultTimeout)
	}
	if c.ReconcileAutoRevokeMax < 1 {
		return errors.New("reconcile-auto-revoke-max: want 1 or more (CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX)")
	}
	// Below the run's bound, so that one employee alone is held alone and
	// never holds everyone else's revocations (a bound of 1 has nothing
	// below it: there the two are equal).
	if c.ReconcileAutoRevokePerUserMax < 1 || c.ReconcileAutoRevokePerUserMax > c.ReconcileAutoRevokeMax ||
		(c.ReconcileAutoRevokePerUserMax == c.ReconcileAutoRevokeMax && c.ReconcileAutoRevokeMax > 1) {
		return fmt.Errorf("reconcile-auto-revoke-per-user-max: want at least 1 and less than reconcile-auto-revoke-max (%d), got %d, so that one employee's certificates cannot hold everyone's (CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX, CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX)",
			c.ReconcileAutoRevokeMax, c.ReconcileAutoRevokePerUserMax)
	}
	return nil
}
