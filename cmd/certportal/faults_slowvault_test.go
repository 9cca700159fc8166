package main

import (
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/testenv"
)

// slowProxy is a TCP proxy in front of the real Vault that holds back every
// response by delay (0: pass straight through). It counts the connections
// open at once, so a test can see how much work the portal keeps waiting
// on Vault.
type slowProxy struct {
	Addr   string
	target string
	ln     net.Listener
	delay  atomic.Int64 // nanoseconds
	open   atomic.Int64
	peak   atomic.Int64
	closed chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

func startSlowProxy(t *testing.T, target string) *slowProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &slowProxy{Addr: ln.Addr().String(), target: target, ln: ln, closed: make(chan struct{}), conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.handle(c) }()
		}
	}()
	t.Cleanup(func() {
		close(p.closed)
		ln.Close()
		// Idle keep-alive connections would hold their readers forever.
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *slowProxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

func (p *slowProxy) handle(client net.Conn) {
	defer client.Close()
	n := p.open.Add(1)
	defer p.open.Add(-1)
	for {
		old := p.peak.Load()
		if n <= old || p.peak.CompareAndSwap(old, n) {
			break
		}
	}
	upstream, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer upstream.Close()
	p.mu.Lock()
	p.conns[client], p.conns[upstream] = true, true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, client)
		delete(p.conns, upstream)
		p.mu.Unlock()
	}()
	select {
	case <-p.closed: // closed before it was tracked
		return
	default:
	}
	gone := make(chan struct{})
	var asked atomic.Bool // a request went up since the last held-back answer
	go func() {
		defer close(gone)
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				asked.Store(true)
				if _, werr := upstream.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := upstream.Read(buf)
		if n > 0 {
			if d := time.Duration(p.delay.Load()); d > 0 && asked.Swap(false) {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-gone: // the portal gave up and hung up
					t.Stop()
					return
				case <-p.closed:
					t.Stop()
					return
				}
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

type memSample struct {
	goroutines int
	heapMB     float64
}

func sample() memSample {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSample{goroutines: runtime.NumGoroutine(), heapMB: float64(m.HeapInuse) / (1 << 20)}
}

// TestSlowVault: with every Vault answer held back 10 s and each Vault call
// bounded to 1 s, users get the 503 page saying Vault may or may not have
// issued (English and Korean: the request was sent, Vault signs after the
// portal gave up) in about a second; 200 simultaneous issuances keep at most
// CERTPORTAL_VAULT_MAX_INFLIGHT connections waiting on Vault and the rest are
// refused at once; /readyz fails while Vault is slow and recovers when it is
// fast; the goroutines return to their baseline; and the certificates Vault
// signed after the portal gave up are listed by reconciliation as issued
// around the portal.
func TestSlowVault(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	proxy := startSlowProxy(t, strings.TrimPrefix(v.Addr, "http://"))
	// Few places and a delay far beyond the timeout, so that what the test
	// tells apart — the portal waiting for Vault, or a queue behind the
	// places — takes many times longer than the quick answers do even on a
	// loaded machine.
	const (
		maxInFlight  = 8
		vaultTimeout = time.Second
		vaultDelay   = 10 * time.Second
	)
	p := startPortal(t, v, map[string]string{
		"VAULT_ADDR":                       "http://" + proxy.Addr,
		"CERTPORTAL_VAULT_TIMEOUT":         vaultTimeout.String(),
		"CERTPORTAL_VAULT_MAX_INFLIGHT":    fmt.Sprint(maxInFlight),
		"CERTPORTAL_RECONCILE_CONCURRENCY": "4", // under the places
		"CERTPORTAL_MAX_ACTIVE":            "100",
		"CERTPORTAL_SESSION_RECHECK":       "1h", // no token lookups during the storm: only issuance waits on Vault
	})
	users := []string{"alice", "bob", "helen", "audrey"}
	browsers := map[string]*client{}
	for _, u := range users {
		b := newBrowser(t, p.URL)
		b.mustLogin(u, v.Password(t, u))
		browsers[u] = b
	}
	if r := browsers["alice"].get("/readyz"); r.StatusCode != http.StatusOK {
		t.Fatalf("readyz with a fast Vault: %d %s", r.StatusCode, r.Body)
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	base := settle(sample(), 2*time.Second)
	t.Logf("baseline: %d goroutines, heap %.1f MB", base.goroutines, base.heapMB)

	proxy.SetDelay(vaultDelay)

	// One user, both languages: the 503 page does not claim nothing was
	// issued — Vault signs these after the portal gave up.
	for _, lang := range []i18n.Lang{i18n.English, i18n.Korean} {
		start := time.Now()
		r := browsers["alice"].post("/certificates?lang="+string(lang), issueForm(p12Password, p12Password, "720h0m0s", "modern"))
		took := time.Since(start)
		want := html.EscapeString(i18n.T(lang, "error.vault_no_answer_issue"))
		if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), want) {
			t.Fatalf("issue with a slow Vault (%s): %d after %s, want 503 with %q\n%s", lang, r.StatusCode, took, want, r.Body)
		}
		// Vault's answer comes after vaultDelay: an answer well before it
		// is the portal's timeout, however loaded the machine.
		if took > vaultDelay/2 {
			t.Errorf("issue with a slow Vault (%s) took %s; the Vault timeout is %s and Vault answers after %s", lang, took, vaultTimeout, vaultDelay)
		}
		t.Logf("slow Vault, one issuance (%s): 503 after %s", lang, took.Round(time.Millisecond))
	}

	// /readyz fails while Vault is slow, within its own bound.
	start := time.Now()
	if r := browsers["alice"].get("/readyz"); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz with a slow Vault: %d %s", r.StatusCode, r.Body)
	}
	t.Logf("slow Vault: /readyz 503 after %s", time.Since(start).Round(time.Millisecond))

	// The storm: 200 issuances at once.
	const clients = 200
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
		slowest  time.Duration
		peak     = base
		stop     = make(chan struct{})
		sampled  = make(chan struct{})
	)
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				s := sample()
				if s.goroutines > peak.goroutines {
					peak.goroutines = s.goroutines
				}
				if s.heapMB > peak.heapMB {
					peak.heapMB = s.heapMB
				}
			}
		}
	}()
	proxy.peak.Store(proxy.open.Load())
	stormStart := time.Now()
	for i := 0; i < clients; i++ {
		b := browsers[users[i%len(users)]]
		wg.Add(1)
		go func() {
			defer wg.Done()
			form := issueForm(p12Password, p12Password, "720h0m0s", "modern")
			req, _ := http.NewRequest(http.MethodPost, p.URL+"/certificates", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			began := time.Now()
			resp, err := b.c.Do(req)
			code := -1
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
			mu.Lock()
			statuses[code]++
			slowest = max(slowest, time.Since(began))
			mu.Unlock()
		}()
	}
	wg.Wait()
	stormTook := time.Since(stormStart)
	close(stop)
	<-sampled
	t.Logf("storm: %d issuances in %s, statuses %v, slowest %s; goroutines peak %d (baseline %d), heap peak %.1f MB (baseline %.1f); Vault connections open at once: %d (limit %d)",
		clients, stormTook.Round(time.Millisecond), statuses, slowest.Round(time.Millisecond), peak.goroutines, base.goroutines, peak.heapMB, base.heapMB, proxy.peak.Load(), maxInFlight)
	if statuses[http.StatusServiceUnavailable] != clients {
		t.Errorf("storm statuses %v: want every one a 503", statuses)
	}
	// Queued behind the places instead of refused, the last would wait
	// clients/maxInFlight timeouts (25 s) — longer, not shorter, on a
	// loaded machine; the quick refusals took 1-2 s idle and up to 9.5 s on
	// a loaded 2-core machine (with 16 places).
	if queued := time.Duration(clients/maxInFlight) * vaultTimeout; slowest > queued-vaultTimeout/2 {
		t.Errorf("slowest answer in the storm took %s, want less than the %s a queue behind the places would take", slowest, queued)
	}
	// The portal's own Vault connections stay within the limit; /readyz
	// and the service identity may add a few of their own.
	if got := proxy.peak.Load(); got > maxInFlight+8 {
		t.Errorf("%d connections waited on Vault at once, want at most %d (+8)", got, maxInFlight)
	}
	// The 200 test clients live in this process too: each costs up to seven
	// goroutines of its own (its request, two transport loops, a dial; the
	// server's connection and its background reader). The Vault side stays
	// bounded: without the limit it would add five a client (two transport
	// loops, three in the proxy).
	if extra := peak.goroutines - base.goroutines; extra > clients*7+maxInFlight*6+100 {
		t.Errorf("goroutines grew by %d during the storm", extra)
	}

	// Fast again: /readyz recovers and the goroutines come back down.
	proxy.SetDelay(0)
	deadline := time.Now().Add(15 * time.Second)
	recovered := time.Now()
	for {
		r := browsers["alice"].get("/readyz")
		if r.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz did not recover within 15s of Vault being fast: %d %s", r.StatusCode, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("fast again: /readyz 200 after %s", time.Since(recovered).Round(time.Millisecond))
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	deadline = time.Now().Add(20 * time.Second)
	var after memSample
	for {
		runtime.GC()
		after = sample()
		if after.goroutines <= base.goroutines+5 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines did not return to baseline: %d now, %d before\n%s", after.goroutines, base.goroutines, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("after the storm: %d goroutines (baseline %d), heap %.1f MB (baseline %.1f)", after.goroutines, base.goroutines, after.heapMB, base.heapMB)

	// Issuing works again without a restart.
	if r := browsers["bob"].post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern")); r.StatusCode != http.StatusOK {
		t.Errorf("issue with Vault fast again: %d\n%s", r.StatusCode, r.Body)
	}

	// Vault got the issue requests and signed them; its answers came after
	// the portal gave up. Those certificates are in Vault and not in the
	// inventory: reconciliation lists them as issued around the portal.
	runReconcile(t, browsers["audrey"])
	rec := browsers["audrey"].get("/audit/reconcile")
	if rec.StatusCode != http.StatusOK {
		t.Fatalf("reconcile: %d", rec.StatusCode)
	}
	vaultOnly := extract(rec.Body, `id="vault-only">`, "</table>")
	n := strings.Count(vaultOnly, "@example.com")
	t.Logf("reconciliation lists %d certificates Vault signed after the portal gave up", n)
	if n == 0 {
		t.Errorf("no certificate signed after the portal gave up listed as vault-only:\n%s", vaultOnly)
	}
}

// settle waits briefly for goroutines that are winding down (closed idle
// connections) and returns the lowest count seen.
func settle(s memSample, d time.Duration) memSample {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		runtime.GC()
		if n := sample(); n.goroutines < s.goroutines {
			s = n
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}
