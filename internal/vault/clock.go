package vault

import (
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Vault's clock, as the portal sees it. Nothing the portal decides depends
// on the two clocks agreeing — token lifetimes arrive as TTLs and are
// counted on the portal's clock, validity comes from the certificate — but
// a portal whose clock is off writes wrong times into the audit trail and
// sends reminders at the wrong moment, so the skew is measured and shown.
//
// Every Vault response carries Go's HTTP Date header (whole seconds): Vault
// stamped it between the moment the request left and the moment the answer
// arrived, so Vault's time then lies in [Date, Date+1s) while the portal's
// lay in [sent, received]. The estimate is the middle of both ranges; its
// error is at most half the round trip plus half a second.

const (
	// skewMaxRoundTrip: slower answers say too little about when Vault
	// stamped them and are not used.
	skewMaxRoundTrip = 2 * time.Second
	// DefaultSkewWarn is the skew (either way) above which the portal warns.
	DefaultSkewWarn = 30 * time.Second
	// skewWarnEvery rate-limits the log warning; /readyz and the metric
	// always show the latest measurement.
	skewWarnEvery = 10 * time.Minute
)

// clockSkew keeps the latest measurement.
type clockSkew struct {
	now  func() time.Time
	warn time.Duration
	log  *slog.Logger

	mu       sync.Mutex
	skew     time.Duration // Vault's clock minus the portal's
	known    bool
	lastWarn time.Time
	warned   bool
}

func (k *clockSkew) observe(date string, sent, received time.Time) {
	if date == "" {
		return
	}
	vaultAt, err := http.ParseTime(date)
	if err != nil {
		return
	}
	rtt := received.Sub(sent)
	if rtt < 0 || rtt > skewMaxRoundTrip {
		return
	}
	skew := vaultAt.Add(500 * time.Millisecond).Sub(sent.Add(rtt / 2)).Round(time.Second)
	k.mu.Lock()
	k.skew, k.known = skew, true
	over := k.warn > 0 && (skew > k.warn || -skew > k.warn)
	logIt := over && k.log != nil && (!k.warned || received.Sub(k.lastWarn) >= skewWarnEvery || received.Before(k.lastWarn))
	if logIt {
		k.lastWarn, k.warned = received, true
	}
	if !over {
		k.warned = false // a later drift warns at once
	}
	k.mu.Unlock()
	if logIt {
		k.log.Warn("the portal's clock and Vault's disagree: audit times and reminders are off by this much; check NTP on both hosts",
			"vault_minus_portal", skew.String(), "threshold", k.warn.String(), "repeats_every", skewWarnEvery.String())
	}
}

// dateTransport reads the Date header of every Vault response.
type dateTransport struct {
	base http.RoundTripper
	skew *clockSkew
}

func (t *dateTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	sent := t.skew.now()
	resp, err := t.base.RoundTrip(r)
	if err == nil {
		t.skew.observe(resp.Header.Get("Date"), sent, t.skew.now())
	}
	return resp, err
}

// ClockSkew is Vault's clock minus the portal's, from the latest Vault
// answer, to the second; known is false before the first answer.
func (c *Client) ClockSkew() (skew time.Duration, known bool) {
	c.skew.mu.Lock()
	defer c.skew.mu.Unlock()
	return c.skew.skew, c.skew.known
}

// SkewWarn is the skew above which the portal warns (0: never).
func (c *Client) SkewWarn() time.Duration { return c.skew.warn }

// Now is the portal's clock as the client reads it.
func (c *Client) Now() time.Time { return c.skew.now() }
