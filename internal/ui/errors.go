package ui

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/portal"
)

// statusFor is the one place a domain error code becomes an HTTP status.
func statusFor(code portal.Code) int {
	switch code {
	case portal.EInvalid:
		return http.StatusBadRequest
	case portal.EUnauthorized:
		return http.StatusUnauthorized
	case portal.EForbidden:
		return http.StatusForbidden
	case portal.ENotFound:
		return http.StatusNotFound
	case portal.EUnavailable:
		return http.StatusServiceUnavailable
	case portal.ETooMany:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

// fail renders err as the error page. Internal errors are logged with their
// cause and shown to the user only as "Internal error".
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := portal.ErrorCode(err)
	status := statusFor(code)
	var pe *portal.Error
	if status >= 500 || !errors.As(err, &pe) {
		s.Logger.ErrorContext(r.Context(), "request failed", "code", string(code), "err", err)
	} else {
		s.Logger.InfoContext(r.Context(), "request refused", "code", string(code), "err", err)
	}
	setRetryAfter(w, pe)
	p := s.newPage(r, "error.title")
	p.Error = portal.ErrorMessage(err)
	if code == portal.EInternal {
		p.Error = "error.internal"
	}
	if pe != nil && code == portal.EInvalid {
		p.Field = pe.Field // "Check the field "ticket": ..."
	}
	s.render(w, r, status, "error", p)
}

// failStatus renders a plain status page with a catalog message.
func (s *Server) failStatus(w http.ResponseWriter, r *http.Request, status int, key string) {
	p := s.newPage(r, "error.title")
	p.Error = key
	s.render(w, r, status, "error", p)
}

// setRetryAfter tells the client when to try again, in whole seconds
// rounded up, for errors that carry a wait.
func setRetryAfter(w http.ResponseWriter, pe *portal.Error) {
	if pe != nil && pe.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((pe.RetryAfter+time.Second-1)/time.Second)))
	}
}

// notFound redirects a trailing-slash form of a page ("/helpdesk/") to the
// page itself, permanently and with the query kept; anything else is a 404.
// Only paths the router serves qualify, and the target is always a path on
// this site: "//evil.example/" is not turned into a redirect elsewhere.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if len(path) > 1 && strings.HasSuffix(path, "/") && r.URL.RawPath == "" {
		canonical := strings.TrimRight(path, "/")
		if strings.HasPrefix(canonical, "/") && !strings.HasPrefix(canonical, "//") && s.hasGET(canonical) {
			if r.URL.RawQuery != "" {
				canonical += "?" + r.URL.RawQuery
			}
			status := http.StatusMovedPermanently
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				status = http.StatusPermanentRedirect // keeps the method and body
			}
			http.Redirect(w, r, canonical, status)
			return
		}
	}
	s.failStatus(w, r, http.StatusNotFound, "error.not_found")
}
