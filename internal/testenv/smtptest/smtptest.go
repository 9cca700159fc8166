// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) in
// the test process: STARTTLS with a throwaway certificate, AUTH PLAIN
// offered only after TLS and required before MAIL. Tests stop and restart
// it on the same port, or make it stall after it has read a message, to
// see what the portal's client does.
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// User and Password are the credentials the server accepts.
const (
	User     = "mailer"
	Password = "s3cret-mail-pass"
)

// Mail is one message the server accepted (or read before stalling).
type Mail struct {
	From string
	To   []string
	Data []byte
	TLS  bool
	Auth string // the authenticated user
}

// Header returns a decoded header of the message.
func (m Mail) Header(name string) string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return ""
	}
	v := msg.Header.Get(name)
	dec := new(mime.WordDecoder)
	if d, err := dec.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// Body returns the decoded (quoted-printable) text body.
func (m Mail) Body() string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return ""
	}
	b, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	return string(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")))
}

// Server is the running server.
type Server struct {
	t      testing.TB
	Addr   string // 127.0.0.1:port, kept across Stop/Start
	CAFile string // PEM of the server's certificate, for CERTPORTAL_SMTP_CACERT
	tlsCfg *tls.Config

	mu      sync.Mutex
	srv     *smtp.Server
	ln      net.Listener
	mails   []Mail
	stall   chan struct{} // non-nil: Data blocks on it after reading the message
	stalled chan struct{} // closed when a Data call starts stalling
}

// Start starts the server on a free loopback port.
func Start(t testing.TB) *Server {
	t.Helper()
	cert, caPEM := selfSigned(t)
	dir := t.TempDir()
	s := &Server{t: t, CAFile: filepath.Join(dir, "smtp-ca.pem"),
		tlsCfg: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	if err := os.WriteFile(s.CAFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.Stop)
	return s
}

// URL is a CERTPORTAL_SMTP_URL for this server, with credentials.
func (s *Server) URL() string {
	return "smtp://" + url.UserPassword(User, Password).String() + "@" + s.Addr
}

func (s *Server) serve(ln net.Listener) {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, c: c}, nil
	}))
	srv.Domain = "localhost"
	srv.TLSConfig = s.tlsCfg
	srv.AllowInsecureAuth = false
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	s.mu.Lock()
	s.srv, s.ln = srv, ln
	s.mu.Unlock()
	go srv.Serve(ln)
}

// Stop closes the listener and every connection: the server is down.
func (s *Server) Stop() {
	s.mu.Lock()
	srv, ln := s.srv, s.ln
	s.srv, s.ln = nil, nil
	if s.stall != nil {
		close(s.stall)
		s.stall = nil
	}
	s.mu.Unlock()
	// Closing the listener too: Serve may not have registered it with
	// the server yet, and srv.Close closes only those it has.
	if ln != nil {
		ln.Close()
	}
	if srv != nil {
		srv.Close()
	}
}

// Restart listens again on the same address.
func (s *Server) Restart() {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := net.Listen("tcp", s.Addr)
		if err == nil {
			s.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("smtptest: listen again on %s: %v", s.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stall makes the next messages hang after the server has read them, until
// Release or Stop; the returned channel is closed once one is hanging.
func (s *Server) Stall() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stall = make(chan struct{})
	s.stalled = make(chan struct{})
	return s.stalled
}

// Release lets stalled messages complete.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stall != nil {
		close(s.stall)
		s.stall = nil
	}
}

// Mails returns what the server has read so far.
func (s *Server) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// WaitMails polls until at least n messages arrived or the deadline passes.
func (s *Server) WaitMails(n int, within time.Duration) []Mail {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		m := s.Mails()
		if len(m) >= n || time.Now().After(deadline) {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type session struct {
	s    *Server
	c    *smtp.Conn
	auth string
	from string
	to   []string
}

func (x *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (x *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != User || password != Password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		x.auth = username
		return nil
	}), nil
}

func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	if x.auth == "" {
		return smtp.ErrAuthRequired
	}
	x.from = from
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := x.c.TLSConnectionState()
	s := x.s
	s.mu.Lock()
	s.mails = append(s.mails, Mail{From: x.from, To: x.to, Data: b, TLS: isTLS, Auth: x.auth})
	stall, stalled := s.stall, s.stalled
	s.mu.Unlock()
	if stall != nil {
		select {
		case <-stalled:
		default:
			close(stalled)
		}
		<-stall
		return errors.New("smtptest: stalled message released")
	}
	return nil
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }

func selfSigned(t testing.TB) (tls.Certificate, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "smtptest"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	if err != nil {
		t.Fatal(fmt.Errorf("smtptest: key pair: %w", err))
	}
	return cert, certPEM
}
