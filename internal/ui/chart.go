package ui

import (
	"fmt"
	"html"
	"html/template"
	"strings"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/store"
)

// activityChart renders the daily counts as an inline SVG bar chart, its
// labels in l, and returns the count the top of its scale stands for. That
// scale is the page's text, not the SVG's: on a phone the chart scrolls
// sideways in its own box, opened at today's end, and a label drawn at the
// SVG's left edge was off screen there. It is built from numbers and
// catalog text (escaped), so marking it safe HTML cannot inject anything.
func activityChart(days []store.DayCount, l i18n.Lang) (template.HTML, int) {
	const w, h, pad = 720, 160, 20
	maxV := 1
	for _, d := range days {
		maxV = max(maxV, d.Issued, d.Revoked, d.FailedLogins)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-label="%s">`, w, h+pad, html.EscapeString(i18n.T(l, "audit.chart_label")))
	fmt.Fprintf(&b, `<line x1="0" y1="%d" x2="%d" y2="%d" stroke="#b8bfcc"/>`, h, w, h)
	// The top of the scale (the tallest bar's height), which the
	// "highest" line above the chart names.
	fmt.Fprintf(&b, `<line x1="0" y1="%d" x2="%d" y2="%d" stroke="#d8dce3" stroke-dasharray="4 4"/>`, pad, w, pad)
	slot := float64(w) / float64(max(len(days), 1))
	bar := slot / 4
	for i, d := range days {
		x := float64(i) * slot
		for j, v := range []struct {
			n     int
			color string
			label string
		}{{d.Issued, "#2457c5", "audit.chart_issued"}, {d.Revoked, "#e8890c", "audit.chart_revoked"}, {d.FailedLogins, "#c62828", "audit.chart_failed"}} {
			bh := float64(v.n) / float64(maxV) * float64(h-pad)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`,
				x+bar*float64(j)+bar/2, float64(h)-bh, bar, bh, v.color, html.EscapeString(i18n.T(l, v.label, d.Day.Format("2006-01-02"), v.n)))
		}
		if i%7 == 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="13" fill="#5a6475">%s</text>`, x, h+14, d.Day.Format("01-02"))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()), maxV //nolint:gosec // numbers and fixed strings only
}
