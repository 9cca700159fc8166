package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/certportal/certportal/internal/nginxconf"
)

func runNginxConfig(_ context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nginx-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var p nginxconf.Params
	fs.StringVar(&p.ServerName, "server-name", "", "nginx server_name, a single host name (required)")
	fs.StringVar(&p.Listen, "listen", nginxconf.DefaultListen, "port or host:port to listen on with TLS")
	fs.StringVar(&p.ServerCert, "server-cert", "", "absolute path of the server certificate chain (PEM)")
	fs.StringVar(&p.ServerKey, "server-key", "", "absolute path of the server private key (PEM)")
	fs.StringVar(&p.ClientCA, "client-ca", "", "absolute path of the portal's issuing CA chain (PEM), not the server certificate")
	fs.StringVar(&p.CRL, "crl", "", "absolute path of the CRLs of every CA in --client-ca (PEM)")
	fs.StringVar(&p.SecurePath, "secure-path", nginxconf.DefaultSecurePath, "location that admits only verified portal certificates")
	fs.StringVar(&p.Verify, "verify", nginxconf.DefaultVerify, `"optional" (403 on the secure path without a certificate) or "on" (certificate required everywhere)`)
	fs.StringVar(&p.Upstream, "upstream", "", "optional http(s)://host:port that receives requests with the verified identity in X-SSL-Client-* headers")
	fs.StringVar(&p.PortalURL, "portal-url", "", "the certificate portal's address, linked from the whoami page and the pages for a refused certificate")
	checkFiles := fs.Bool("check-files", true, "check that the four files are readable here; false to render for another machine")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: certportal nginx-config --server-name NAME --server-cert FILE --server-key FILE --client-ca FILE --crl FILE [flags]")
		fmt.Fprintln(fs.Output(), "\nPrints an Nginx server block that protects a path with portal-issued client certificates.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		// The flag package has already printed the error and the usage.
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "certportal nginx-config: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	p.SkipFileChecks = !*checkFiles

	// Render buffers internally, so stdout stays empty on any error.
	if err := nginxconf.Render(stdout, p); err != nil {
		return fmt.Errorf("nginx-config: %w", err)
	}
	return nil
}
