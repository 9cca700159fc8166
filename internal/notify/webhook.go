package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/i18n"
)

// Webhook formats (CERTPORTAL_NOTIFY_WEBHOOK_FORMAT).
const (
	FormatGeneric = "generic" // JSON below, signed
	FormatSlack   = "slack"   // Slack incoming webhook: {"text": …}
	FormatTeams   = "teams"   // Teams workflow webhook: a message with an Adaptive Card
)

// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body
// under the shared secret (generic format; sent with the others too when a
// secret is set).
const SignatureHeader = "X-Certportal-Signature"

// TimestampHeader and SignatureV2Header make a delivery replay-safe: the
// time it was sent (Unix seconds) and "sha256=" with the hex HMAC-SHA256 of
// "<timestamp>.<body>" under the same secret, so a receiver that rejects
// old timestamps cannot be fed a captured delivery again. SignatureHeader
// stays as it was for receivers that check it.
const (
	TimestampHeader   = "X-Certportal-Timestamp"
	SignatureV2Header = "X-Certportal-Signature-V2"
)

// Webhook posts a JSON payload. The URL is treated as a secret (Slack's and
// Teams' URLs are credentials): no error or log line carries it.
type Webhook struct {
	URL    string
	Format string
	Secret []byte
	Client *http.Client
	Now    func() time.Time // the timestamp's clock; notify.New sets the runner's
}

// GenericPayload is the generic format's body.
type GenericPayload struct {
	Event     string `json:"event"` // certificate.expiring or certificate.expired
	Username  string `json:"username"`
	Subject   string `json:"subject"`
	Label     string `json:"label,omitempty"`
	Serial    string `json:"serial"`
	NotAfter  string `json:"not_after"` // RFC 3339, UTC
	Threshold string `json:"threshold"` // e.g. 168h0m0s, or expired
	Language  string `json:"language"`
	Title     string `json:"title"`
	Text      string `json:"text"`
	RenewURL  string `json:"renew_url"`
}

// ValidFormat reports whether f is a known format.
func ValidFormat(f string) bool { return f == FormatGeneric || f == FormatSlack || f == FormatTeams }

func (w *Webhook) payload(m *Message) any {
	switch w.Format {
	case FormatSlack:
		return map[string]any{"text": slackEscape(m.Subject + "\n" + m.Text)}
	case FormatTeams:
		return map[string]any{
			"type": "message",
			"attachments": []any{map[string]any{
				"contentType": "application/vnd.microsoft.card.adaptive",
				"content": map[string]any{
					"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
					"type":    "AdaptiveCard",
					"version": "1.4",
					"body":    teamsBody(m.Subject, m.Text),
					"actions": []any{map[string]any{"type": "Action.OpenUrl", "title": i18n.T(m.Lang, "notify.renew"), "url": m.RenewURL}},
				},
			}},
		}
	default:
		ev := "certificate.expiring"
		if m.Kind == "expired" {
			ev = "certificate.expired"
		}
		return GenericPayload{Event: ev, Username: m.Username, Subject: m.CertSubject, Label: m.Label, Serial: m.Serial,
			NotAfter: m.NotAfter.UTC().Format(time.RFC3339), Threshold: thresholdName(m.Threshold), Language: string(m.Lang),
			Title: m.Subject, Text: m.Text, RenewURL: m.RenewURL}
	}
}

// slackEscape makes text plain for Slack, which reads <…> as a link
// (<https://…|Renew>) or a mention (<!channel>) and & as the start of an
// entity: the message quotes the user's label, and an employee must not
// be able to ping a channel or plant a link the portal's bot appears to
// send. Slack asks for exactly these three to be escaped; bare URLs, like
// the renew link, are still linked.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// teamsBody is the card's title and text as RichTextBlocks of TextRuns,
// one block per line: Teams reads a TextBlock's text as Markdown, so a
// label "[Renew](https://…)" would become a link; a TextRun is shown as
// typed. Empty lines become spacing.
func teamsBody(title, text string) []any {
	block := func(run map[string]any, spacing string) map[string]any {
		b := map[string]any{"type": "RichTextBlock", "inlines": []any{run}}
		if spacing != "" {
			b["spacing"] = spacing
		}
		return b
	}
	body := []any{block(map[string]any{"type": "TextRun", "text": title, "weight": "Bolder"}, "")}
	spacing := ""
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			spacing = "Medium"
			continue
		}
		body = append(body, block(map[string]any{"type": "TextRun", "text": line}, spacing))
		spacing = ""
	}
	return body
}

// Sign is the signature header's value for body.
func Sign(secret, body []byte) string {
	return signature(secret, body)
}

// SignV2 is SignatureV2Header's value for body sent at timestamp (Unix
// seconds, as in TimestampHeader).
func SignV2(secret []byte, timestamp string, body []byte) string {
	return signature(secret, []byte(timestamp), []byte{'.'}, body)
}

// signature is "sha256=" and the hex HMAC-SHA256 of parts, in order.
func signature(secret []byte, parts ...[]byte) string {
	mac := hmac.New(sha256.New, secret)
	for _, p := range parts {
		mac.Write(p)
	}
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (w *Webhook) Send(ctx context.Context, m *Message) error {
	body, err := json.Marshal(w.payload(m))
	if err != nil {
		return fmt.Errorf("webhook: %w: %w", err, ErrPermanent)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: bad URL: %w", ErrPermanent)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "certportal")
	if len(w.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.Secret, body))
		now := w.Now
		if now == nil { // a Webhook used without a Runner
			now = time.Now
		}
		ts := strconv.FormatInt(now().Unix(), 10)
		req.Header.Set(TimestampHeader, ts)
		req.Header.Set(SignatureV2Header, SignV2(w.Secret, ts, body))
	}
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		// *url.Error quotes the URL; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout:
		return fmt.Errorf("webhook: answered %s", resp.Status)
	default:
		return fmt.Errorf("webhook: answered %s: %w", resp.Status, ErrPermanent)
	}
}
