package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"net/textproto"
	"net/url"
	"os"
	"strings"
	"time"
)

// SMTPConfig is a parsed CERTPORTAL_SMTP_URL.
type SMTPConfig struct {
	Host, Port  string
	ImplicitTLS bool // smtps://
	StartTLS    bool // smtp:// unless ?starttls=off (loopback only)
	Username    string
	Password    string // never printed: String leaves it out
	From        string
	RootCAs     *x509.CertPool // nil: the system's
	HeloName    string
}

// String describes the server without its credentials (for logs and the
// audit trail).
func (c *SMTPConfig) String() string {
	mode := "starttls"
	switch {
	case c.ImplicitTLS:
		mode = "tls"
	case !c.StartTLS:
		mode = "plain"
	}
	return fmt.Sprintf("%s:%s (%s, auth=%t)", c.Host, c.Port, mode, c.Username != "")
}

// ParseSMTPURL reads smtp://[user:pass@]host[:port][?starttls=off] or
// smtps://[user:pass@]host[:port]. Errors never quote the URL, which may
// hold a password.
func ParseSMTPURL(raw, from, caFile string) (*SMTPConfig, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("CERTPORTAL_SMTP_URL: not a URL (want smtp://user:pass@host:587 or smtps://host:465)")
	}
	c := &SMTPConfig{Host: u.Hostname(), Port: u.Port(), From: from}
	switch u.Scheme {
	case "smtp":
		c.StartTLS = true
		if c.Port == "" {
			c.Port = "587"
		}
	case "smtps":
		c.ImplicitTLS = true
		if c.Port == "" {
			c.Port = "465"
		}
	default:
		return nil, errors.New("CERTPORTAL_SMTP_URL: scheme must be smtp or smtps")
	}
	if c.Host == "" {
		return nil, errors.New("CERTPORTAL_SMTP_URL: host missing")
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	q := u.Query()
	for k := range q {
		if k != "starttls" {
			return nil, fmt.Errorf("CERTPORTAL_SMTP_URL: unknown parameter %q", k)
		}
	}
	switch q.Get("starttls") {
	case "", "on":
	case "off":
		if c.ImplicitTLS {
			return nil, errors.New("CERTPORTAL_SMTP_URL: starttls=off makes no sense with smtps")
		}
		if !isLoopback(c.Host) {
			return nil, errors.New("CERTPORTAL_SMTP_URL: starttls=off is allowed only for a loopback relay (127.0.0.1, ::1, localhost)")
		}
		if c.Username != "" {
			return nil, errors.New("CERTPORTAL_SMTP_URL: credentials are sent only over TLS; drop them or starttls=off")
		}
		c.StartTLS = false
	default:
		return nil, errors.New("CERTPORTAL_SMTP_URL: starttls must be on or off")
	}
	if _, err := mailAddress(from); err != nil {
		return nil, fmt.Errorf("CERTPORTAL_MAIL_FROM: %w", err)
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CERTPORTAL_SMTP_CACERT: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("CERTPORTAL_SMTP_CACERT: no PEM certificate in it")
		}
	}
	return c, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// mailAddress accepts a bare address with no header-breaking characters.
func mailAddress(s string) (string, error) {
	if s == "" || strings.ContainsAny(s, "\r\n<>\", ") || strings.Count(s, "@") != 1 || strings.HasPrefix(s, "@") || strings.HasSuffix(s, "@") {
		return "", fmt.Errorf("%q is not a plain address like certportal@example.com", s)
	}
	return s, nil
}

// SMTP sends email over real SMTP: TLS (STARTTLS or implicit) before AUTH
// PLAIN, always; net/smtp's PlainAuth also refuses to send the password on
// a connection without TLS.
type SMTP struct {
	Cfg *SMTPConfig
}

func (s *SMTP) Send(ctx context.Context, m *Message) error {
	to, err := mailAddress(m.To)
	if err != nil {
		return fmt.Errorf("recipient: %w: %w", err, ErrPermanent)
	}
	c := s.Cfg
	addr := net.JoinHostPort(c.Host, c.Port)
	tlsCfg := &tls.Config{ServerName: c.Host, RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12}
	d := net.Dialer{Timeout: 30 * time.Second}
	var conn net.Conn
	if c.ImplicitTLS {
		td := tls.Dialer{NetDialer: &d, Config: tlsCfg}
		conn, err = td.DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("smtp: connect %s: %w", addr, err)
	}
	defer conn.Close()
	// Every step below is bounded by the send's context.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	cl, err := smtp.NewClient(conn, c.Host)
	if err != nil {
		return smtpErr("greeting", err)
	}
	defer cl.Close()
	helo := c.HeloName
	if helo == "" {
		helo = "certportal"
	}
	if err := cl.Hello(helo); err != nil {
		return smtpErr("EHLO", err)
	}
	if c.StartTLS {
		if ok, _ := cl.Extension("STARTTLS"); !ok {
			return errors.New("smtp: the server does not offer STARTTLS, which CERTPORTAL_SMTP_URL requires (smtps:// for implicit TLS)")
		}
		if err := cl.StartTLS(tlsCfg); err != nil {
			return smtpErr("STARTTLS", err)
		}
	}
	if c.Username != "" {
		if _, tlsOn := cl.TLSConnectionState(); !tlsOn {
			return errors.New("smtp: refusing to authenticate without TLS")
		}
		if err := cl.Auth(smtp.PlainAuth("", c.Username, c.Password, c.Host)); err != nil {
			return smtpErr("AUTH", err)
		}
	}
	if err := cl.Mail(c.From); err != nil {
		return smtpErr("MAIL FROM", err)
	}
	if err := cl.Rcpt(to); err != nil {
		return smtpErr("RCPT TO", err)
	}
	w, err := cl.Data()
	if err != nil {
		return smtpErr("DATA", err)
	}
	if _, err := w.Write(buildMail(c.From, to, m)); err != nil {
		return smtpErr("DATA", err)
	}
	if err := w.Close(); err != nil {
		return smtpErr("end of DATA", err)
	}
	_ = cl.Quit()
	return nil
}

// smtpErr keeps the server's reply (no credential is ever in it) and
// marks 5xx replies permanent.
func smtpErr(step string, err error) error {
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return fmt.Errorf("smtp %s: %w: %w", step, err, ErrPermanent)
	}
	return fmt.Errorf("smtp %s: %w", step, err)
}

// buildMail writes a UTF-8 text/plain message (quoted-printable; subject
// RFC 2047-encoded, so Korean survives every relay).
func buildMail(from, to string, m *Message) []byte {
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", from)
	h("To", to)
	h("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	h("Date", time.Now().UTC().Format(time.RFC1123Z))
	h("Message-ID", "<"+m.ID+"@certportal>")
	h("Content-Language", string(m.Lang))
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	h("Auto-Submitted", "auto-generated")
	h("X-Certportal-Serial", m.Serial)
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(m.Text, "\n", "\r\n")))
	_ = qp.Close()
	return b.Bytes()
}
