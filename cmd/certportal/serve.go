package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/ui"
)

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runServeWith(ctx, args, getenv, stdout, stderr, app.Options{})
}

// runServeWith is serve with what only a test chooses (the portal's clock).
func runServeWith(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, o app.Options) error {
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := newLogger(stderr, cfg.LogLevel)
	app.TuneRuntime(getenv)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	handler, cleanup, err := app.BuildWith(ctx, cfg, log, o)
	if err != nil {
		ln.Close()
		return err
	}
	defer cleanup()
	scheme := "http"
	if cfg.TLS() {
		scheme = "https"
	}
	fmt.Fprintf(stdout, "certportal listening on %s://%s\n", scheme, ln.Addr())
	return serve(ctx, ln, handler, cfg, log)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func serve(ctx context.Context, ln net.Listener, h http.Handler, cfg config.Config, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Downloads ask the connection whether the client took the file.
		ConnContext: ui.ConnContext,
	}
	errc := make(chan error, 1)
	go func() {
		if cfg.TLS() {
			errc <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
