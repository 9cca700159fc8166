package deploytest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
)

// The parts of the OCI image spec the test reads, decoded with the standard
// library so the portal's module does not need go-containerregistry.
type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
}

type ociIndex struct {
	SchemaVersion int             `json:"schemaVersion"`
	Manifests     []ociDescriptor `json:"manifests"`
}

type ociManifest struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Config        ociDescriptor   `json:"config"`
	Layers        []ociDescriptor `json:"layers"`
}

type ociConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User         string              `json:"User"`
		Env          []string            `json:"Env"`
		Entrypoint   []string            `json:"Entrypoint"`
		Cmd          []string            `json:"Cmd"`
		WorkingDir   string              `json:"WorkingDir"`
		ExposedPorts map[string]struct{} `json:"ExposedPorts"`
		Labels       map[string]string   `json:"Labels"`
		Healthcheck  *struct {
			Test []string `json:"Test"`
		} `json:"Healthcheck"`
	} `json:"config"`
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// buildImage runs deploy/image (what `make image` runs) on the static binary
// into a fresh layout.
func buildImage(t *testing.T) string {
	t.Helper()
	bin := staticBinary(t)
	out := filepath.Join(t.TempDir(), "image")
	cmd := exec.Command("go", "run", ".", "-binary", bin, "-out", out, "-version", "imagetest", "-tag", "certportal:imagetest")
	cmd.Dir = filepath.Join(testenv.RepoRoot(t), "deploy", "image")
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy/image: %v\n%s", err, b)
	}
	return out
}

// readBlob returns a blob of the layout after checking it against its digest.
func readBlob(t *testing.T, dir string, d ociDescriptor) []byte {
	t.Helper()
	algo, hexDigest, ok := strings.Cut(d.Digest, ":")
	if !ok || algo != "sha256" {
		t.Fatalf("blob digest %q: want sha256:<hex>", d.Digest)
	}
	b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", hexDigest))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != hexDigest {
		t.Fatalf("blob %s: content does not match its digest", d.Digest)
	}
	if int64(len(b)) != d.Size {
		t.Fatalf("blob %s: size %d, descriptor says %d", d.Digest, len(b), d.Size)
	}
	return b
}

func readImage(t *testing.T, dir string) (ociManifest, ociConfig) {
	t.Helper()
	lay, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if err != nil || !strings.Contains(string(lay), `"imageLayoutVersion"`) {
		t.Fatalf("oci-layout: %v %s", err, lay)
	}
	var idx ociIndex
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if idx.SchemaVersion != 2 || len(idx.Manifests) != 1 {
		t.Fatalf("index.json: schema %d, %d manifests; want 2 and one image", idx.SchemaVersion, len(idx.Manifests))
	}
	md := idx.Manifests[0]
	if md.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("manifest media type %q", md.MediaType)
	}
	if md.Annotations["org.opencontainers.image.ref.name"] == "" {
		t.Error("index.json: the image has no org.opencontainers.image.ref.name, so `skopeo copy oci:dir:tag` cannot name it")
	}
	var m ociManifest
	if err := json.Unmarshal(readBlob(t, dir, md), &m); err != nil {
		t.Fatal(err)
	}
	if m.Config.MediaType != "application/vnd.oci.image.config.v1+json" {
		t.Fatalf("config media type %q", m.Config.MediaType)
	}
	var c ociConfig
	if err := json.Unmarshal(readBlob(t, dir, m.Config), &c); err != nil {
		t.Fatal(err)
	}
	if len(c.RootFS.DiffIDs) != len(m.Layers) {
		t.Fatalf("config lists %d diff ids for %d layers", len(c.RootFS.DiffIDs), len(m.Layers))
	}
	return m, c
}

// unpack extracts the image's layers in order into root, keeping owners and
// modes (the tests run as root), as a container runtime would.
func unpack(t *testing.T, dir string, m ociManifest, c ociConfig, root string) {
	t.Helper()
	for i, l := range m.Layers {
		blob := readBlob(t, dir, l)
		var r io.Reader = bytes.NewReader(blob)
		switch l.MediaType {
		case "application/vnd.oci.image.layer.v1.tar+gzip":
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		case "application/vnd.oci.image.layer.v1.tar":
		default:
			t.Fatalf("layer %d: media type %q", i, l.MediaType)
		}
		h := sha256.New()
		tr := tar.NewReader(io.TeeReader(r, h))
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			name := path.Clean("/" + hdr.Name)
			if strings.HasPrefix(path.Base(name), ".wh.") {
				t.Fatalf("layer %d: whiteout %s in a from-scratch image", i, name)
			}
			dst := filepath.Join(root, filepath.FromSlash(name))
			mode := os.FileMode(hdr.Mode).Perm()
			switch hdr.Typeflag {
			case tar.TypeDir:
				if err := os.MkdirAll(dst, 0o755); err != nil {
					t.Fatal(err)
				}
			case tar.TypeReg:
				f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(f, tr); err != nil {
					t.Fatal(err)
				}
				f.Close()
			case tar.TypeSymlink:
				if err := os.Symlink(hdr.Linkname, dst); err != nil {
					t.Fatal(err)
				}
				continue
			default:
				t.Fatalf("layer %d: %s has unexpected type %c", i, name, hdr.Typeflag)
			}
			if err := os.Lchown(dst, hdr.Uid, hdr.Gid); err != nil {
				t.Fatal(err)
			}
			if hdr.Mode&0o1000 != 0 {
				mode |= os.ModeSticky
			}
			if err := os.Chmod(dst, mode); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = io.Copy(io.Discard, r)
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != c.RootFS.DiffIDs[i] {
			t.Fatalf("layer %d: uncompressed digest %s, config says %s", i, got, c.RootFS.DiffIDs[i])
		}
	}
}

// TestImage builds the image without a container engine, unpacks it, and
// runs the portal from the image's own filesystem (chroot) with the image's
// own entrypoint, user and environment, against a real Vault.
func TestImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestImage runs the image's binary chrooted as uid 65532 and needs root (the test machines run tests as root)")
	}
	dir := buildImage(t)
	m, c := readImage(t, dir)

	cfg := c.Config
	if c.OS != "linux" || c.Architecture != "amd64" {
		t.Errorf("platform %s/%s", c.OS, c.Architecture)
	}
	if cfg.User != "65532:65532" {
		t.Errorf("User %q: want the non-root 65532:65532", cfg.User)
	}
	if !slices.Equal(cfg.Entrypoint, []string{"/usr/local/bin/certportal"}) || !slices.Equal(cfg.Cmd, []string{"serve"}) {
		t.Errorf("Entrypoint %q Cmd %q", cfg.Entrypoint, cfg.Cmd)
	}
	env := map[string]string{}
	for _, kv := range cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if env["CERTPORTAL_LISTEN"] != "0.0.0.0:8080" || env["CERTPORTAL_DB"] != "/var/lib/certportal/certportal.db" {
		t.Errorf("Env %q", cfg.Env)
	}
	if _, ok := cfg.ExposedPorts["8080/tcp"]; !ok || len(cfg.ExposedPorts) != 1 {
		t.Errorf("ExposedPorts %v", cfg.ExposedPorts)
	}
	for _, l := range []string{"title", "description", "version", "source", "created"} {
		if cfg.Labels["org.opencontainers.image."+l] == "" {
			t.Errorf("label org.opencontainers.image.%s missing: %v", l, cfg.Labels)
		}
	}
	if cfg.Labels["org.opencontainers.image.version"] != "imagetest" {
		t.Errorf("version label %q", cfg.Labels["org.opencontainers.image.version"])
	}
	if cfg.Healthcheck == nil || !slices.Equal(cfg.Healthcheck.Test, []string{"CMD", "/usr/local/bin/certportal", "healthcheck"}) {
		t.Errorf("Healthcheck %+v", cfg.Healthcheck)
	}

	root := t.TempDir()
	// t.TempDir is 0700 root: the chrooted 65532 must be able to walk in.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	unpack(t, dir, m, c, root)

	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil || !strings.Contains(string(passwd), ":65532:65532:") {
		t.Errorf("/etc/passwd has no entry for uid 65532: %v\n%s", err, passwd)
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt")); err != nil || fi.Size() == 0 {
		t.Errorf("CA certificates missing: %v", err)
	}
	st, err := os.Stat(filepath.Join(root, "var/lib/certportal"))
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 65532 || st.Mode().Perm() != 0o700 {
		t.Errorf("/var/lib/certportal: uid %d mode %v; want 65532 and 0700", sys.Uid, st.Mode().Perm())
	}
	entry := filepath.Join(root, cfg.Entrypoint[0])
	assertStatic(t, entry)
	for _, shell := range []string{"bin/sh", "bin/bash", "bin/busybox"} {
		if _, err := os.Lstat(filepath.Join(root, shell)); err == nil {
			t.Errorf("the image has /%s; it should carry no shell", shell)
		}
	}

	v := testenv.StartConfiguredVault(t)
	port := freePort(t)
	// The image's environment as given; only the port moves off 8080 so
	// parallel test runs do not collide, and the portal gets its Vault.
	procEnv := append([]string{}, cfg.Env...)
	procEnv = setEnv(procEnv, "CERTPORTAL_LISTEN", "0.0.0.0:"+strconv.Itoa(port))
	for k, val := range v.PortalEnv() {
		procEnv = setEnv(procEnv, k, val)
	}
	serve := imageCommand(root, cfg.WorkingDir, cfg.User, procEnv, append(cfg.Entrypoint, cfg.Cmd...)...)
	stdout, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	serve.Stderr = &stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, addr, ok := strings.Cut(sc.Text(), "listening on "); ok {
				listening <- addr
			}
		}
		exited <- serve.Wait()
	}()
	t.Cleanup(func() {
		_ = serve.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = serve.Process.Kill()
		}
	})
	var addr string
	select {
	case addr = <-listening:
	case err := <-exited:
		t.Fatalf("the image's portal exited before listening: %v\n%s", err, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("the image's portal did not listen within 60s\n%s", stderr.String())
	}
	t.Logf("image portal: %s", addr)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d %s", p, resp.StatusCode, body)
		}
	}
	// It runs as 65532 and wrote its SQLite file into the image's state dir.
	if st, err := os.Stat(filepath.Join(root, "var/lib/certportal/certportal.db")); err != nil {
		t.Errorf("no database in the image's /var/lib/certportal: %v", err)
	} else if st.Sys().(*syscall.Stat_t).Uid != 65532 {
		t.Errorf("database owned by uid %d, want 65532", st.Sys().(*syscall.Stat_t).Uid)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", serve.Process.Pid)); err != nil || !strings.Contains(string(b), "\nUid:\t65532\t65532\t65532\t65532\n") {
		t.Errorf("the portal process does not run as 65532: %v\n%s", err, b)
	}

	// The image's HEALTHCHECK, run from the image like a runtime runs it.
	hc := imageCommand(root, cfg.WorkingDir, cfg.User, procEnv, cfg.Healthcheck.Test[1:]...)
	if b, err := hc.CombinedOutput(); err != nil {
		t.Errorf("HEALTHCHECK against the running portal: %v\n%s", err, b)
	}
	// …and it fails when nothing answers.
	down := setEnv(append([]string{}, procEnv...), "CERTPORTAL_LISTEN", "0.0.0.0:"+strconv.Itoa(freePort(t)))
	hc = imageCommand(root, cfg.WorkingDir, cfg.User, down, cfg.Healthcheck.Test[1:]...)
	if b, err := hc.CombinedOutput(); err == nil {
		t.Errorf("HEALTHCHECK with no portal listening exited 0\n%s", b)
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("HEALTHCHECK with no portal listening: %v, want exit status 1", err)
	}
	hc = imageCommand(root, cfg.WorkingDir, cfg.User, procEnv, cfg.Entrypoint[0], "healthcheck", "-path", "/nope")
	if b, err := hc.CombinedOutput(); err == nil {
		t.Errorf("healthcheck of a 404 path exited 0\n%s", b)
	}

	_ = serve.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the image's portal did not stop cleanly on SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Error("the image's portal did not stop within 20s of SIGTERM")
	}
}

// imageCommand runs argv inside the unpacked image: chrooted to its root,
// in its working directory, as its configured uid:gid, with env only.
func imageCommand(root, workdir, user string, env []string, argv ...string) *exec.Cmd {
	u, g, _ := strings.Cut(user, ":")
	uid, _ := strconv.Atoi(u)
	gid, _ := strconv.Atoi(g)
	cmd := exec.Command(argv[0], argv[1:]...)
	// exec looks argv[0] up on the host before the chroot applies; the
	// kernel resolves Path inside the new root.
	cmd.Path = argv[0]
	cmd.Err = nil
	cmd.Dir = workdir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     root,
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd
}

func setEnv(env []string, k, v string) []string {
	for i, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// assertStatic fails when the binary needs a dynamic loader: the image has
// no libc, so a CGO build would not start there.
func assertStatic(t *testing.T, p string) {
	t.Helper()
	f, err := elf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter: not a static build", p)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s links %v: not a static build", p, libs)
	}
}
