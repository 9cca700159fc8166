// Command image builds certportal's OCI image without a container engine:
// one layer on an empty base with the static binary, CA certificates, a
// passwd/group entry for the non-root user and an empty state directory,
// written as an OCI image layout (`make image` → bin/image/).
//
// It is its own module so go-containerregistry stays out of the portal's
// dependency graph; the Dockerfile builds the same image where an engine
// and a registry are available.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The user distroless calls nonroot: no login shell, no home to write to.
const (
	uid      = 65532
	stateDir = "var/lib/certportal"
	binPath  = "usr/local/bin/certportal"
)

func main() {
	bin := flag.String("binary", "", "static certportal binary (CGO_ENABLED=0)")
	out := flag.String("out", "", "directory to write the OCI image layout to (replaced)")
	cacerts := flag.String("cacerts", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to ship for Vault and SMTP TLS")
	version := flag.String("version", "dev", "org.opencontainers.image.version")
	revision := flag.String("revision", "", "org.opencontainers.image.revision (git commit)")
	tag := flag.String("tag", "certportal:dev", "org.opencontainers.image.ref.name of the image in the layout")
	flag.Parse()
	if *bin == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: image -binary <static certportal> -out <dir> [-version v]")
		os.Exit(2)
	}
	if err := build(*bin, *out, *cacerts, *version, *revision, *tag); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func build(bin, out, cacerts, version, revision, tag string) error {
	// SOURCE_DATE_EPOCH makes the image reproducible; without it the
	// epoch itself is used, so two builds of one binary give one digest.
	created := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		created = time.Unix(n, 0).UTC()
	}
	binData, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	caData, err := os.ReadFile(cacerts)
	if err != nil {
		return fmt.Errorf("CA certificates: %w", err)
	}
	layerTar, err := rootfs(created, binData, caData)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	labels := map[string]string{
		"org.opencontainers.image.title":         "certportal",
		"org.opencontainers.image.description":   "Turns a Vault userpass login into a browser-ready PKCS#12 client certificate",
		"org.opencontainers.image.version":       version,
		"org.opencontainers.image.revision":      revision,
		"org.opencontainers.image.source":        "https://github.com/certportal/certportal",
		"org.opencontainers.image.created":       created.Format(time.RFC3339),
		"org.opencontainers.image.base.name":     "scratch",
		"org.opencontainers.image.documentation": "https://github.com/certportal/certportal/blob/main/docs/deploy.md",
	}
	if revision == "" {
		delete(labels, "org.opencontainers.image.revision")
	}
	// Config first, then the layer: appending fills rootfs.diff_ids and the
	// history, which a later config replacement would wipe.
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	base, err = mutate.ConfigFile(base, &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: created},
		Author:       "certportal",
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: []string{"/" + binPath},
			Cmd:        []string{"serve"},
			User:       strconv.Itoa(uid) + ":" + strconv.Itoa(uid),
			WorkingDir: "/" + stateDir,
			Env: []string{
				"PATH=/usr/local/bin",
				"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
				"CERTPORTAL_LISTEN=0.0.0.0:8080",
				"CERTPORTAL_DB=/" + stateDir + "/certportal.db",
			},
			ExposedPorts: map[string]struct{}{"8080/tcp": {}},
			Volumes:      map[string]struct{}{"/" + stateDir: {}},
			Labels:       labels,
			StopSignal:   "SIGTERM",
			Healthcheck: &v1.HealthConfig{
				Test:        []string{"CMD", "/" + binPath, "healthcheck"},
				Interval:    30 * time.Second,
				Timeout:     5 * time.Second,
				StartPeriod: 30 * time.Second,
				Retries:     3,
			},
		},
	})
	if err != nil {
		return err
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "deploy/image: certportal, CA certificates, passwd, /var/lib/certportal",
			Comment:   "built without a container engine",
		},
	})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	p, err := layout.Write(out, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag,
	})); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("image: %s written to %s (%s)\n", d, filepath.Clean(out), tag)
	return nil
}

// rootfs is the image's single layer, entries in a fixed order with fixed
// times so a rebuild of the same binary gives the same digest.
func rootfs(mtime time.Time, binData, caData []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: owner, Gid: owner, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	passwd := "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group := "root:x:0:\nnonroot:x:65532:\n"
	steps := []func() error{
		func() error { return dir("etc", 0o755, 0) },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return file("etc/nsswitch.conf", 0o644, []byte("hosts: files dns\n")) },
		func() error { return dir("etc/ssl", 0o755, 0) },
		func() error { return dir("etc/ssl/certs", 0o755, 0) },
		func() error { return file("etc/ssl/certs/ca-certificates.crt", 0o644, caData) },
		func() error { return dir("home", 0o755, 0) },
		func() error { return dir("home/nonroot", 0o700, uid) },
		// Go's os.TempDir; Kubernetes mounts an emptyDir over it when the
		// root filesystem is read-only.
		func() error { return dir("tmp", 0o1777, 0) },
		func() error { return dir("usr", 0o755, 0) },
		func() error { return dir("usr/local", 0o755, 0) },
		func() error { return dir("usr/local/bin", 0o755, 0) },
		func() error { return file(binPath, 0o755, binData) },
		func() error { return dir("var", 0o755, 0) },
		func() error { return dir("var/lib", 0o755, 0) },
		// The SQLite default lives here; owned by the runtime user only.
		func() error { return dir(stateDir, 0o700, uid) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
