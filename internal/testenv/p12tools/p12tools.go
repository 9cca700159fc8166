// Package p12tools runs the programs users open .p12 files with (OpenSSL 3,
// NSS's pk12util, Java's keytool, Python's cryptography) for the tests of
// both paths that make a .p12: the server's (internal/bundle) and the
// browser's (cmd/certportal).
package p12tools

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Tool is one program users open .p12 files with. Run opens path with the
// password in the environment variable P12PW (never on a command line) and
// returns what it printed; an error means it refused the file.
type Tool struct {
	Name string
	Bin  string // must be installed (deploy/scripts/deps.sh installs it)
	Run  func(tb testing.TB, bin, path, password string) ([]byte, error)
}

// Path finds the tool's program; a machine without it fails the test
// (make deps installs it) rather than skipping the proof.
func (tl Tool) Path(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath(tl.Bin)
	if err != nil {
		tb.Fatalf("%s (%s) is not installed: run deploy/scripts/deps.sh", tl.Name, tl.Bin)
	}
	return bin
}

func runWithPassword(bin, password string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "P12PW="+password)
	return cmd.CombinedOutput()
}

// PasswordFile writes password to a file of the test's own (pk12util and
// tstclnt read passwords from files only), removed with its directory.
func PasswordFile(tb testing.TB, password string) string {
	tb.Helper()
	f := filepath.Join(tb.TempDir(), "pw")
	if err := os.WriteFile(f, []byte(password), 0o600); err != nil {
		tb.Fatal(err)
	}
	return f
}

// Tools are the four programs; each prints the certificate's subject
// except OpenSSL (-noout).
var Tools = []Tool{
	{"openssl", "openssl", func(tb testing.TB, bin, path, pw string) ([]byte, error) {
		// Without -legacy: OpenSSL 3's default provider must read both.
		return runWithPassword(bin, pw, "pkcs12", "-in", path, "-info", "-noout", "-passin", "env:P12PW")
	}},
	{"nss", "pk12util", func(tb testing.TB, bin, path, pw string) ([]byte, error) {
		return runWithPassword(bin, pw, "-l", path, "-w", PasswordFile(tb, pw), "-d", "sql:"+tb.TempDir())
	}},
	{"keytool", "keytool", func(tb testing.TB, bin, path, pw string) ([]byte, error) {
		return runWithPassword(bin, pw, "-list", "-v", "-storetype", "pkcs12", "-keystore", path, "-storepass:env", "P12PW")
	}},
	{"python-cryptography", "/usr/bin/python3", func(tb testing.TB, bin, path, pw string) ([]byte, error) {
		// Debian's python3-cryptography, for Debian's interpreter.
		const script = `import os, sys
from cryptography.hazmat.primitives.serialization import pkcs12
key, cert, chain = pkcs12.load_key_and_certificates(open(sys.argv[1], "rb").read(), os.environb[b"P12PW"])
assert key is not None and len(chain) >= 1
print(cert.subject.rfc4514_string())`
		return runWithPassword(bin, pw, "-c", script, path)
	}},
}
