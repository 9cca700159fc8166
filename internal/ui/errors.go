package ui

import (
	"errors"
	"net/http"
	"net/url"
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
	case portal.EConflict:
		return http.StatusConflict
	case portal.EUnavailable:
		return http.StatusServiceUnavailable
	case portal.ETooMany:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

// logFailure is what fail and failJSON share: err's code and status, the
// log line (an error with its cause for a 5xx or an unexpected error, a
// refusal otherwise; both name the request id the page quotes), and the
// Retry-After its portal.Error asks for, on a 5xx as on a 4xx. pe is err's
// *portal.Error, nil for an error that is not one.
func (s *Server) logFailure(w http.ResponseWriter, r *http.Request, err error) (code portal.Code, status int, pe *portal.Error) {
	code = portal.ErrorCode(err)
	status = statusFor(code)
	// errors.As first: pe must be found whatever the status, or a 5xx's
	// wait is lost.
	if !errors.As(err, &pe) || status >= 500 {
		s.Logger.ErrorContext(r.Context(), "request failed", "request_id", RequestID(r.Context()), "code", string(code), "err", err)
	} else {
		s.Logger.InfoContext(r.Context(), "request refused", "request_id", RequestID(r.Context()), "code", string(code), "err", err)
	}
	setRetryAfter(w, pe)
	return code, status, pe
}

// fail renders err as the error page. Internal errors are logged with their
// cause and shown to the user only as "Internal error".
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, status, pe := s.logFailure(w, r, err)
	p := s.newPage(r, errorTitle(status))
	p.Error = portal.ErrorMessage(err)
	if code == portal.EInternal {
		p.Error = "error.internal"
	}
	if pe != nil && code == portal.EInvalid && pe.Field != "serial" {
		// "Check the field "ticket": ...". Never the serial: it comes
		// from the address or a hidden field, not one the user can check
		// ("already revoked" is said on its own).
		p.Field = pe.Field
	}
	s.render(w, r, status, "error", p)
}

// failStatus renders a plain status page with a catalog message.
func (s *Server) failStatus(w http.ResponseWriter, r *http.Request, status int, key string) {
	p := s.newPage(r, errorTitle(status))
	p.Error = key
	s.render(w, r, status, "error", p)
}

// errorTitle is the error page's heading (and the tab's title) for status:
// what happened in a few words, so "Page not found" is not announced as
// "Something went wrong" with the reason below it.
func errorTitle(status int) string {
	switch status {
	case http.StatusForbidden:
		return "error.title_forbidden"
	case http.StatusNotFound:
		return "error.title_not_found"
	case http.StatusTooManyRequests:
		return "error.title_too_many"
	case http.StatusServiceUnavailable:
		return "error.title_unavailable"
	default:
		return "error.title"
	}
}

// waitMinutes is pe's wait in whole minutes rounded up (0: none known).
func waitMinutes(pe *portal.Error) int {
	if pe == nil || pe.RetryAfter <= 0 {
		return 0
	}
	return int((pe.RetryAfter + time.Minute - 1) / time.Minute)
}

// setRetryAfter tells the client when to try again, in whole seconds
// rounded up, for errors that carry a wait. Vault or the store being
// unavailable carries none on purpose: the portal cannot know when an
// operator unseals Vault or the database is back, and a guessed number
// would be a promise it cannot keep (scripts poll /readyz instead; the
// page says "try again in a few minutes").
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
	if canonical, ok := slashRedirect(r.URL.Path, r.URL.RawPath, r.URL.RawQuery, s.hasGET); ok {
		status := http.StatusMovedPermanently
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			status = http.StatusPermanentRedirect // keeps the method and body
		}
		http.Redirect(w, r, canonical, status)
		return
	}
	s.failStatus(w, r, http.StatusNotFound, "error.not_found")
}

// slashRedirect is notFound's target for path: the path without its
// trailing slashes when that is a page (has), with the query kept. The
// target is always a path on this site (FuzzSlashRedirect).
func slashRedirect(path, rawPath, rawQuery string, has func(string) bool) (string, bool) {
	if len(path) <= 1 || !strings.HasSuffix(path, "/") || rawPath != "" {
		return "", false
	}
	canonical := strings.TrimRight(path, "/")
	if !has(canonical) {
		return "", false
	}
	// path is decoded: escape it again, or a '%' in it would make the
	// Location unreadable (found by FuzzSlashRedirect).
	canonical = (&url.URL{Path: canonical}).EscapedPath()
	if rawQuery != "" {
		// A request line may carry a raw '#' in its query; in a Location
		// it would start a fragment ("/0?#%" does not even parse, found by
		// FuzzSlashRedirect), so it is escaped like the browser would.
		canonical += "?" + strings.ReplaceAll(rawQuery, "#", "%23")
	}
	// The query is checked too: FuzzSlashRedirect found a control byte in
	// it, which makes the Location unreadable. The whole target must parse
	// as a path on this site.
	if !isLocalPath(canonical) {
		return "", false
	}
	if u, err := url.Parse(canonical); err != nil || u.Scheme != "" || u.Host != "" {
		return "", false
	}
	return canonical, true
}

// isLocalPath reports whether p, used as a link or a Location, stays on
// this site: one leading '/', not "//host" or "/\host" (which browsers read
// as another host), and no control character (browsers drop tabs and
// newlines, so "/\t/evil" would become "//evil").
func isLocalPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return false
		}
	}
	return true
}
