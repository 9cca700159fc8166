package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// VaultClockSkew exports skew, read at each scrape, as
// certportal_vault_clock_skew_seconds: Vault's clock minus the portal's
// (positive: Vault is ahead). Before the first Vault answer it is 0 and
// certportal_vault_clock_skew_known is 0.
func (m *Metrics) VaultClockSkew(skew func() (time.Duration, bool)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "certportal_vault_clock_skew_seconds",
			Help: "Vault's clock minus the portal's, from the Date header of Vault's latest answer (whole seconds).",
		}, func() float64 { d, _ := skew(); return d.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "certportal_vault_clock_skew_known",
			Help: "1 once a Vault answer has given the clock skew, 0 before.",
		}, func() float64 {
			if _, ok := skew(); ok {
				return 1
			}
			return 0
		}),
	)
}
