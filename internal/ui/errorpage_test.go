package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/session"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv/syncbuf"
)

// panickingStore is the store as /readyz sees it, failing the way a bug
// does: a panic in the middle of a handler.
type panickingStore struct{}

func (panickingStore) Ping(context.Context) error { panic("store: nil map in ping") }

// upVault answers /readyz's health call; nothing else of Vault is reached
// by these tests (a call to anything else would panic on the nil Vault).
type upVault struct{ portal.Vault }

func (upVault) Health(context.Context) error { return nil }

// mustErrorServer is the real server with its real middleware stack, on a
// fresh SQLite store, with pinger as the store /readyz pings.
func mustErrorServer(tb testing.TB, pinger Pinger) (*Server, *syncbuf.Buffer) {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, tb.TempDir()+"/certportal.db")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	sessions, err := session.New(st, session.Options{Key: bytes.Repeat([]byte{7}, 32), Idle: time.Hour, Absolute: 8 * time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	svc := portal.NewService(upVault{}, nil, st, portal.Options{DeviceKeys: portal.DeviceKeysOff}, log)
	s, err := newServer(Deps{Service: svc, Sessions: sessions, Store: pinger, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	return s, logs
}

// mustBreakTemplate makes page name's template fail while it executes
// (after the layout's head is in the buffer), as a bad field or function
// in a template would.
func mustBreakTemplate(tb testing.TB, s *Server, name string) {
	tb.Helper()
	bad, err := s.pages[name].Clone()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := bad.Parse(`{{define "content"}}<p>half a page</p>{{index .Langs 99}}{{end}}`); err != nil {
		tb.Fatal(err)
	}
	s.pages[name] = bad
}

// langRequests are the two ways a visitor chooses Korean (and the default).
var langRequests = []struct {
	name   string
	lang   i18n.Lang
	header func(*http.Request)
}{
	{"en", i18n.English, func(*http.Request) {}},
	{"ko accept-language", i18n.Korean, func(r *http.Request) { r.Header.Set("Accept-Language", "ko-KR,ko;q=0.9") }},
	{"ko cookie", i18n.Korean, func(r *http.Request) { r.AddCookie(&http.Cookie{Name: i18n.CookieName, Value: string(i18n.Korean)}) }},
}

// checkStyled500: a 500 on the portal's own error page (layout, stylesheet,
// the error message in lang), nothing of another page before it, and the
// request's X-Request-Id quoted as its reference.
func checkStyled500(t *testing.T, rec *httptest.ResponseRecorder, lang i18n.Lang) string {
	t.Helper()
	body := rec.Body.String()
	id := rec.Header().Get("X-Request-Id")
	if rec.Code != http.StatusInternalServerError || id == "" {
		t.Fatalf("status %d, X-Request-Id %q\n%s", rec.Code, id, body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	for _, want := range []string{
		`<link rel="stylesheet" href="/static/style.css">`,
		`<body class="page-error">`,
		`<html lang="` + string(lang) + `">`,
		`id="error-message">` + html.EscapeString(i18n.T(lang, "error.internal")) + `</p>`,
		`id="error-reference">` + html.EscapeString(i18n.T(lang, "error.reference", id)) + `</p>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s\n%s", want, body)
		}
	}
	if lang == i18n.English && !strings.Contains(body, "Reference: "+id) {
		t.Errorf("page does not say Reference: %s\n%s", id, body)
	}
	if strings.Contains(body, "Nothing was issued") || strings.Contains(body, "아무것도 발급되지 않았습니다") {
		t.Errorf("a 500 claims nothing was issued\n%s", body)
	}
	if n := strings.Count(body, "<!doctype html>"); n != 1 || strings.Contains(body, "half a page") {
		t.Errorf("page has %d documents or part of the failed page\n%s", n, body)
	}
	return id
}

// TestPanicErrorPage: a handler that panics gets the styled 500 page in
// the visitor's language with the request id as its reference, not text
// saying nothing was issued (a panic may come after an issuance was
// recorded), and the panic's log line names the same id.
func TestPanicErrorPage(t *testing.T) {
	for _, tc := range langRequests {
		t.Run(tc.name, func(t *testing.T) {
			s, logs := mustErrorServer(t, panickingStore{})
			req := httptest.NewRequest(http.MethodGet, "/readyz", nil)
			tc.header(req)
			rec := httptest.NewRecorder()
			s.mux.ServeHTTP(rec, req)
			id := checkStyled500(t, rec, tc.lang)
			var panicLine string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "msg=panic") {
					panicLine = l
				}
			}
			if !strings.Contains(panicLine, "request_id="+id) {
				t.Errorf("panic log line does not name request %s: %q", id, panicLine)
			}
		})
	}
}

// TestTemplateFailureErrorPage: a page whose template fails is answered
// with the styled 500 page and its reference, not plain text and not half
// of the page; when the error page's own template fails too, plain text
// (still with the reference) ends it instead of a recursion.
func TestTemplateFailureErrorPage(t *testing.T) {
	for _, tc := range langRequests {
		t.Run(tc.name, func(t *testing.T) {
			s, logs := mustErrorServer(t, panickingStore{})
			mustBreakTemplate(t, s, "login")
			req := httptest.NewRequest(http.MethodGet, "/login", nil)
			tc.header(req)
			rec := httptest.NewRecorder()
			s.mux.ServeHTTP(rec, req)
			id := checkStyled500(t, rec, tc.lang)
			if !strings.Contains(logs.String(), "request_id="+id) {
				t.Errorf("no log line names request %s\n%s", id, logs.String())
			}
		})
		t.Run(tc.name+" error template broken too", func(t *testing.T) {
			s, _ := mustErrorServer(t, panickingStore{})
			mustBreakTemplate(t, s, "login")
			mustBreakTemplate(t, s, "error")
			req := httptest.NewRequest(http.MethodGet, "/login", nil)
			tc.header(req)
			rec := httptest.NewRecorder()
			s.mux.ServeHTTP(rec, req)
			body, id := rec.Body.String(), rec.Header().Get("X-Request-Id")
			want := i18n.T(tc.lang, "error.internal") + "\n" + i18n.T(tc.lang, "error.reference", id) + "\n"
			if rec.Code != http.StatusInternalServerError || id == "" || body != want {
				t.Fatalf("status %d, X-Request-Id %q, body %q; want 500 and %q", rec.Code, id, body, want)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

// TestClientErrorPageHasNoReference: 4xx pages are the visitor's to fix
// and carry no reference.
func TestClientErrorPageHasNoReference(t *testing.T) {
	s, _ := mustErrorServer(t, panickingStore{})
	rec := httptest.NewRecorder()
	s.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/no-such-page", nil))
	if rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "error-reference") ||
		strings.Contains(rec.Body.String(), "Reference:") {
		t.Fatalf("404: status %d\n%s", rec.Code, rec.Body.String())
	}
}

// TestPanicAfterResponseBegan: a panic before anything was sent replaces
// the answer with the error page, without the headers of the download the
// handler was preparing; a panic once the answer has begun (bytes written,
// or headers flushed) cuts the connection instead of appending an error
// page that the client would take for the end of the download.
func TestPanicAfterResponseBegan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter)
		abort   bool
	}{
		{"headers only", func(w http.ResponseWriter) {
			w.Header().Set("Content-Disposition", `attachment; filename="alice.p12"`)
			w.Header().Set("Content-Length", "4096")
			w.Header().Set("Retry-After", "30")
		}, false},
		{"body begun", func(w http.ResponseWriter) {
			w.Header().Set("Content-Disposition", `attachment; filename="audit.csv"`)
			_, _ = w.Write([]byte("id,time\n"))
		}, true},
		{"status sent", func(w http.ResponseWriter) { w.WriteHeader(http.StatusOK) }, true},
		{"headers flushed", func(w http.ResponseWriter) { _ = http.NewResponseController(w).Flush() }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := mustErrorServer(t, panickingStore{})
			h := s.requestID(s.recoverer(s.logRequests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tc.handler(w)
				panic("after the handler began")
			}))))
			rec := httptest.NewRecorder()
			aborted := func() (aborted bool) {
				defer func() {
					if v := recover(); v != nil {
						if v != http.ErrAbortHandler {
							t.Fatalf("panic %v reached the server", v)
						}
						aborted = true
					}
				}()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
				return false
			}()
			if aborted != tc.abort {
				t.Fatalf("aborted %v, want %v (status %d)\n%s", aborted, tc.abort, rec.Code, rec.Body)
			}
			if tc.abort {
				if strings.Contains(rec.Body.String(), "<!doctype html>") {
					t.Errorf("error page appended to a begun answer\n%s", rec.Body)
				}
				return
			}
			checkStyled500(t, rec, i18n.English)
			for _, h := range []string{"Content-Disposition", "Content-Length", "Retry-After"} {
				if v := rec.Header().Get(h); v != "" {
					t.Errorf("error page sent with the handler's %s: %q", h, v)
				}
			}
		})
	}
}

// TestCSRInternalErrorReference: the device-key endpoint's JSON refusal of
// a 5xx carries the reference too, in the message the page shows.
func TestCSRInternalErrorReference(t *testing.T) {
	s, _ := mustErrorServer(t, panickingStore{})
	for _, tc := range []struct {
		err    error
		status int
		ref    bool
	}{
		{errors.New("sign: connection reset"), http.StatusInternalServerError, true},
		{portal.Errorf(portal.EUnavailable, "error.vault_unavailable", "vault: %w", errors.New("sealed")), http.StatusServiceUnavailable, true},
		{portal.Invalid("csr", "error.csr_invalid"), http.StatusBadRequest, false},
	} {
		rec := httptest.NewRecorder()
		s.requestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.failJSON(w, r, tc.err) })).
			ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/certificates/csr", nil))
		var got csrError
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		id := rec.Header().Get("X-Request-Id")
		ref := " " + i18n.T(i18n.English, "error.reference", id)
		if rec.Code != tc.status || (got.Reference == id) != tc.ref || strings.HasSuffix(got.Error, ref) != tc.ref {
			t.Errorf("%v: status %d, %+v; want %d, reference %v (%s)", tc.err, rec.Code, got, tc.status, tc.ref, id)
		}
	}
}

// TestFailRetryAfter: a portal.Error that says when to come back carries
// Retry-After (whole seconds, rounded up) on the error page and the JSON
// refusal alike, on a 5xx as on a 429; an error without a wait, or one
// that is no portal.Error, carries none.
func TestFailRetryAfter(t *testing.T) {
	s, _ := mustErrorServer(t, panickingStore{})
	for _, tc := range []struct {
		name   string
		err    error
		status int
		want   string
	}{
		{"5xx with a wait", &portal.Error{Code: portal.EUnavailable, Message: "error.vault_unavailable", Err: errors.New("sealed"), RetryAfter: 89500 * time.Millisecond},
			http.StatusServiceUnavailable, "90"},
		{"429 with a wait", &portal.Error{Code: portal.ETooMany, Message: "error.login_throttled", RetryAfter: time.Minute}, http.StatusTooManyRequests, "60"},
		{"5xx without a wait", portal.Errorf(portal.EUnavailable, "error.vault_unavailable", "vault: %w", errors.New("sealed")), http.StatusServiceUnavailable, ""},
		{"not a portal.Error", errors.New("sign: connection reset"), http.StatusInternalServerError, ""},
	} {
		for _, form := range []struct {
			name string
			fail func(http.ResponseWriter, *http.Request, error)
		}{{"page", s.fail}, {"json", s.failJSON}} {
			t.Run(tc.name+" "+form.name, func(t *testing.T) {
				rec := httptest.NewRecorder()
				s.requestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { form.fail(w, r, tc.err) })).
					ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
				if got := rec.Header().Get("Retry-After"); rec.Code != tc.status || got != tc.want {
					t.Errorf("status %d, Retry-After %q; want %d, %q", rec.Code, got, tc.status, tc.want)
				}
			})
		}
	}
}
