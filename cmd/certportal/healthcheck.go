package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// runHealthcheck is for container HEALTHCHECKs and exec probes: images carry
// no shell or curl, so the binary checks itself. Exit 0 when the URL answers
// 200, 1 otherwise.
func runHealthcheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", envOr(getenv, "CERTPORTAL_LISTEN", "127.0.0.1:8080"), "the portal's listen address (CERTPORTAL_LISTEN)")
	path := fs.String("path", "/healthz", "path to check: /healthz (the process serves) or /readyz (Vault and the store answer)")
	rawURL := fs.String("url", "", "check this URL instead of http(s)://<listen><path>")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	insecure := fs.Bool("insecure", false, "do not verify the portal's own TLS certificate (it serves one for its own name, not for 127.0.0.1)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "certportal healthcheck: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	u := *rawURL
	tlsOn := getenv("CERTPORTAL_TLS_CERT") != ""
	if u == "" {
		host, port, err := net.SplitHostPort(*listen)
		if err != nil {
			return fmt.Errorf("healthcheck: listen address %q: %w", *listen, err)
		}
		// A wildcard listen address is reached on loopback from inside the
		// container or unit.
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		scheme := "http"
		if tlsOn {
			scheme = "https"
		}
		u = scheme + "://" + net.JoinHostPort(host, port) + *path
	}
	tr := &http.Transport{Proxy: nil}
	if *insecure || (tlsOn && *rawURL == "") {
		// Checking our own listener on loopback: the certificate names the
		// portal's public host, so verification would always fail here.
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback self-check only
	}
	c := &http.Client{Transport: tr, Timeout: *timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", u, resp.Status)
	}
	_, err = fmt.Fprintf(stdout, "ok %s\n", u)
	return err
}
