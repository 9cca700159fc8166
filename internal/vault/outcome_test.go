package vault

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestIssueFailureOutcome: how a failed pki/issue is classified decides
// whether the portal may treat it as never made (ErrNotActed, a refusal) or
// must assume Vault may have signed. Only a request never sent or turned
// away by a sealed Vault is ErrNotActed; a timeout after sending, a 5xx and
// a dropped connection are not. (TestCapPlaceReleased checks a real sealed
// Vault's answer.)
func TestIssueFailureOutcome(t *testing.T) {
	answer := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}
	}
	closed := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := "http://" + ln.Addr().String()
		ln.Close()
		return addr
	}
	cases := []struct {
		name     string
		handler  http.HandlerFunc // nil: nothing listens
		full     bool             // every place among the calls under way taken
		want     []error
		notActed bool
	}{
		{"sealed", answer(http.StatusServiceUnavailable, `{"errors":["Vault is sealed"]}`), false, []error{ErrUnavailable}, true},
		{"other 503", answer(http.StatusServiceUnavailable, `{"errors":["local node not active but active cluster node not found"]}`), false, []error{ErrUnavailable}, false},
		{"500", answer(http.StatusInternalServerError, `{"errors":["internal error"]}`), false, []error{ErrUnavailable}, false},
		{"403", answer(http.StatusForbidden, `{"errors":["permission denied"]}`), false, []error{ErrPermissionDenied}, false},
		{"400", answer(http.StatusBadRequest, `{"errors":["common name not allowed"]}`), false, []error{ErrRefused}, false},
		{"no answer in time", func(w http.ResponseWriter, r *http.Request) {
			// Read to the end: only then does the server notice the
			// client hanging up.
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
		}, false, []error{ErrUnavailable, ErrNoAnswer}, false},
		{"connection dropped", func(w http.ResponseWriter, r *http.Request) {
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
		}, false, []error{ErrUnavailable, ErrNoAnswer}, false},
		{"connection refused", nil, false, []error{ErrUnavailable}, true},
		{"no place among the calls under way", answer(http.StatusOK, `{}`), true, []error{ErrUnavailable}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := closed(t)
			if tc.handler != nil {
				srv := httptest.NewServer(tc.handler)
				t.Cleanup(srv.Close)
				addr = srv.URL
			}
			c, err := New(Config{Addr: addr, Timeout: 300 * time.Millisecond, MaxInFlight: 1})
			if err != nil {
				t.Fatal(err)
			}
			if tc.full {
				c.slots <- struct{}{}
				defer func() { <-c.slots }()
			}
			_, err = c.Issue(context.Background(), "token", IssueRequest{Mount: "pki", Role: "user-auth", CommonName: "alice@example.com"})
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("error %v is not %v", err, w)
				}
			}
			if got := errors.Is(err, ErrNotActed); got != tc.notActed {
				t.Errorf("error %v: ErrNotActed %v, want %v", err, got, tc.notActed)
			}
		})
	}
}

// TestLoginTransportFailure: a login whose connection breaks after it was
// sent is ErrNoAnswer (Vault may have checked, and counted, the password),
// and its error — which the portal logs — does not carry the request's
// URL: its path is the username as typed, which may be a password typed
// into the wrong field. A refused connection is ErrNotActed, also without
// the name.
func TestLoginTransportFailure(t *testing.T) {
	const typed = "hunter2summer99"
	dropped := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
			c.Close()
		}
	}))
	t.Cleanup(dropped.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		name, addr string
		want       error
	}{{"connection dropped", dropped.URL, ErrNoAnswer}, {"connection refused", refused, ErrNotActed}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{Addr: tc.addr, Timeout: 2 * time.Second, MaxInFlight: 1})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.LoginUserpass(context.Background(), "userpass", typed, "a password")
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrUnavailable) {
				t.Errorf("error %v: want %v and ErrUnavailable", err, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), typed) || strings.Contains(err.Error(), "/v1/")) {
				t.Errorf("error names the request's URL: %v", err)
			}
		})
	}
}
