package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/certportal/certportal/internal/testenv"
)

var (
	staticOnce sync.Once
	staticBin  string
	staticErr  error
	staticOut  []byte
)

// staticBinary builds certportal the way the image and the Dockerfile do
// (CGO off, -trimpath) once per test binary; go's build cache makes it cheap
// after `make image`.
func staticBinary(t *testing.T) string {
	t.Helper()
	root := testenv.RepoRoot(t)
	staticOnce.Do(func() {
		dir, err := os.MkdirTemp("", "certportal-static-")
		if err != nil {
			staticErr = err
			return
		}
		staticBin = filepath.Join(dir, "certportal")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=imagetest", "-o", staticBin, "./cmd/certportal")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		staticOut, staticErr = cmd.CombinedOutput()
	})
	if staticErr != nil {
		t.Fatalf("static build of certportal: %v\n%s", staticErr, staticOut)
	}
	return staticBin
}
