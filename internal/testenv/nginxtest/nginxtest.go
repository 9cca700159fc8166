// Package nginxtest runs Debian's real nginx for tests: a main configuration
// that keeps every file inside the test's directory, a master process on a
// loopback port stopped at cleanup, reloads, and requests that present a
// chosen client certificate.
package nginxtest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv/syncbuf"
)

// Binary finds Debian's nginx. The tests that use it are the proof the
// template works, so a machine without it fails rather than skips.
func Binary(tb testing.TB) string {
	tb.Helper()
	if path, err := exec.LookPath("nginx"); err == nil {
		return path
	}
	// /usr/sbin is often missing from a non-root PATH.
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	tb.Fatal("nginx not installed: run `make deps`")
	return ""
}

// MainConfig wraps a server block in a main configuration that keeps every
// file nginx writes inside dir, writes both, and returns the main file's path.
func MainConfig(tb testing.TB, dir string, server []byte) string {
	tb.Helper()
	main := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr info;
events { worker_connections 64; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/server.conf;
}
`, dir)
	path := filepath.Join(dir, "nginx.conf")
	for name, data := range map[string][]byte{"server.conf": server, "nginx.conf": []byte(main)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return path
}

// Args points every path nginx would otherwise take from its build at dir.
func Args(dir, conf string, extra ...string) []string {
	return append([]string{"-p", dir + "/", "-e", "stderr", "-c", conf}, extra...)
}

// FreeAddr returns a loopback address nothing listens on right now.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Nginx is a master process run by a test.
type Nginx struct {
	Bin  string
	Addr string
	Dir  string
	Conf string
	Log  *syncbuf.Buffer // stdout and stderr (error_log is stderr)
	cmd  *exec.Cmd
}

// Args are the flags for another nginx invocation on this instance (-t, -s reload).
func (n *Nginx) Args(extra ...string) []string { return Args(n.Dir, n.Conf, extra...) }

// Start checks the server block listening on addr with nginx -t and runs
// nginx until the test ends.
func Start(tb testing.TB, addr string, server []byte) *Nginx {
	tb.Helper()
	dir := tb.TempDir()
	n := &Nginx{Bin: Binary(tb), Addr: addr, Dir: dir, Log: &syncbuf.Buffer{}}
	n.Conf = MainConfig(tb, dir, server)
	if out, err := exec.Command(n.Bin, n.Args("-t")...).CombinedOutput(); err != nil {
		tb.Fatalf("nginx -t: %v\n%s\n%s", err, out, server)
	}
	n.cmd = exec.Command(n.Bin, n.Args()...)
	n.cmd.Stdout, n.cmd.Stderr = n.Log, n.Log
	// Its own process group, so that cleanup can reach the workers too if
	// the master does not stop them.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { n.cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", n.Addr, time.Second)
		if err == nil {
			c.Close()
			return n
		}
		select {
		case <-exited:
			tb.Fatalf("nginx exited at start:\n%s", n.Log.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("nginx did not listen on %s: %v\n%s", n.Addr, err, n.Log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Reload makes nginx re-read its files (the CRL) and waits until the old
// worker, which still holds the old files, has exited and so accepts no more
// connections.
func (n *Nginx) Reload(tb testing.TB) {
	tb.Helper()
	const oldWorkerGone = "exited with code"
	before := strings.Count(n.Log.String(), oldWorkerGone)
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(n.Log.String(), oldWorkerGone) <= before {
		if time.Now().After(deadline) {
			tb.Fatalf("nginx did not reload:\n%s", n.Log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Get fetches path presenting cert (nil: none), trusting roots for the
// server certificate issued to serverName. Each request uses a new
// connection, so no TLS session or keep-alive carries a verification over
// from an earlier request.
func (n *Nginx) Get(tb testing.TB, roots *x509.CertPool, serverName, path string, cert *tls.Certificate, header http.Header) (int, string) {
	tb.Helper()
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{
				RootCAs:    roots,
				ServerName: serverName,
				// Present the certificate whatever CAs nginx asks for, as an
				// attacker would; Go's default keeps quiet about a foreign one.
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					if cert == nil {
						return &tls.Certificate{}, nil
					}
					return cert, nil
				},
			},
		},
	}
	req, err := http.NewRequest(http.MethodGet, "https://"+n.Addr+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v\n%s", path, err, n.Log.String())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// LogContains waits up to five seconds for s to appear in nginx's log. A
// worker's log line reaches the buffer through a pipe, a moment after the
// response the test already read, so reading the log once races with it.
func (n *Nginx) LogContains(s string) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(n.Log.String(), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
