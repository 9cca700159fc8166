package nginxconf_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync"
	"testing"

	"github.com/certportal/certportal/internal/nginxconf"
)

// TestNginxUpstreamSeesWhatNginxJudged: nginx picks the location from the
// decoded, dot-segment-resolved path, but a proxy_pass without a URI part
// forwards the request line as the client sent it. /secure/%2e%2e/x was
// judged as /x (the open location, no certificate needed) and reached the
// upstream as /secure/%2e%2e/x, which a router matching the raw path (chi,
// Express) served as the protected /secure/ area (review 81 F2). Both
// locations now forward the path nginx judged.
func TestNginxUpstreamSeesWhatNginxJudged(t *testing.T) {
	pki := mustPKI(t)
	alice, _ := mustClient(t, pki.issuing, "alice@example.com")
	type seen struct{ uri, verify string }
	var mu sync.Mutex
	var got []seen
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.RequestURI, r.Header.Get("X-Ssl-Client-Verify")})
		mu.Unlock()
		w.Write([]byte("upstream " + r.RequestURI))
	}))
	t.Cleanup(upstream.Close)
	n := startNginx(t, pki, nginxconf.Params{Upstream: upstream.URL})

	// underSecure: whether an upstream could take uri for the protected
	// area, however it reads it — raw, decoded, with dot segments resolved,
	// case-insensitively.
	underSecure := func(uri string) bool {
		p, _, _ := strings.Cut(uri, "?")
		views := []string{p}
		if d, err := url.PathUnescape(p); err == nil {
			views = append(views, d, path.Clean(d), path.Clean(strings.ReplaceAll(d, `\`, "/")))
		}
		for _, v := range views {
			if strings.HasPrefix(strings.ToLower(v), "/secure") {
				return true
			}
		}
		return false
	}
	for _, p := range []string{
		"/secure/%2e%2e/report", "/secure/%2E%2E/anything", "/secure/%2e%2e", "/secure/..%2Fpublic",
		"/secure%2F..%2Fx", "/secure/../x", "/secure/./../x", "/secure/%2e/%2e%2e/x", "/Secure/%2e%2e/x",
		"/secure/..%5Cx", "/secure%2f%2e%2e%2fx",
	} {
		mu.Lock()
		got = nil
		mu.Unlock()
		r := n.get(t, pki, p, nil, nil)
		mu.Lock()
		for _, s := range got {
			if underSecure(s.uri) && s.verify != "SUCCESS" {
				t.Errorf("GET %s without a certificate: the upstream got %q (verify %s), status %d", p, s.uri, s.verify, r.status)
			}
		}
		mu.Unlock()
	}
	// What nginx judged is what the upstream gets, on both locations; the
	// query goes as sent.
	for _, tc := range []struct {
		path, want string
		cert       bool
	}{
		{"/", "/", false},
		{"/a/../b", "/b", false},
		{"/docs/a%20b?q=a%2Fb&x=1", "/docs/a%20b?q=a%2Fb&x=1", false},
		{"/secure/x/../y", "/secure/y", true},
		{"/secure/report?id=7", "/secure/report?id=7", true},
	} {
		mu.Lock()
		got = nil
		mu.Unlock()
		var r response
		if tc.cert {
			r = n.get(t, pki, tc.path, &alice, nil)
		} else {
			r = n.get(t, pki, tc.path, nil, nil)
		}
		if r.status != http.StatusOK || r.body != "upstream "+tc.want {
			t.Errorf("GET %s (certificate %v): %d %q, want 200 from the upstream for %s", tc.path, tc.cert, r.status, r.body, tc.want)
		}
	}
}
