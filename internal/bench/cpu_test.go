package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/bundle"
	"github.com/certportal/certportal/internal/testenv"
)

const cpuPerWorker = 100 // issuances per client in the timed part: 800, ~10 s of portal CPU ticks at 10 ms

// BenchmarkIssuanceCPU: CPU time per issuance of the portal process (its
// own getrusage over the timed part, the benchmark's clients running in
// another process) next to Vault's (devvault's CPU from /proc), and the
// share of it that is the .p12 encoding (three 2048-iteration KDF runs,
// which stay), measured alone on one locked thread. CPU time, not wall
// time: it holds on a loaded machine. CERTPORTAL_BENCH_CPUPROFILE=file
// writes a pprof CPU profile of the portal over the timed part.
func BenchmarkIssuanceCPU(b *testing.B) {
	quiesce()
	v := testenv.StartConfiguredVault(b)
	var users []string
	for i := 0; i < workers; i++ {
		u := "cpu" + string(rune('a'+i))
		v.CreateUser(b, u, u+"-password", nil, "certportal-user")
		users = append(users, u)
	}
	p := startPortalProc(b, v, b.TempDir()+"/bench.db", 2*cpuPerWorker)
	e := &env{v: v, users: users, srv: nil}
	clients := make([]*http.Client, workers)
	for i, u := range users {
		clients[i] = e.loginAt(b, p.URL, u)
	}
	// Warm up: connection pools, prepared statements, the CA chain.
	parallel(b, 10, func(w int) error { return issueViaPortal(clients[w], p.URL) })
	stop := p.startProfile(b, os.Getenv("CERTPORTAL_BENCH_CPUPROFILE"))
	b.ResetTimer()
	portal0, vault0 := p.cpu(b), processCPU(b, v.Pid)
	rate := parallel(b, cpuPerWorker, func(w int) error { return issueViaPortal(clients[w], p.URL) })
	portal1, vault1 := p.cpu(b), processCPU(b, v.Pid)
	b.StopTimer()
	stop()
	n := float64(workers * cpuPerWorker)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	portalMS := ms(portal1-portal0) / n
	kdf := p12EncodeCPU(b)
	b.ReportMetric(portalMS, "portal_cpu_ms/issue")
	b.ReportMetric(ms(vault1-vault0)/n, "vault_cpu_ms/issue")
	b.ReportMetric(kdf, "p12_encode_cpu_ms")
	b.ReportMetric(portalMS-kdf, "portal_non_p12_cpu_ms(<0.5)")
	b.ReportMetric(rate, "issues/s")
}

// p12EncodeCPU is the CPU milliseconds of one modern .p12 encoding (EC
// P-256 key, its certificate and a one-certificate chain), as the portal
// does per issuance, on one locked thread.
func p12EncodeCPU(b *testing.B) float64 {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cpu@example.com"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const n = 200
	start := threadCPU()
	for i := 0; i < n; i++ {
		if _, err := bundle.Encode(key, cert, []*x509.Certificate{cert}, p12Password, bundle.Modern); err != nil {
			b.Fatal(err)
		}
	}
	return float64(threadCPU()-start) / float64(time.Millisecond) / n
}
