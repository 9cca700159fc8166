package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// SecretID is what Vault says about the portal's current AppRole secret id.
// The accessor is not a credential (it cannot log in): it names the secret
// id in Vault's audit log and for `secret-id-accessor/destroy`.
type SecretID struct {
	Known    bool // false: it no longer logs in (expired, or destroyed)
	Accessor string
	Created  time.Time
	Expires  time.Time // zero: never expires
	// Path is the file the secret id is read from; "" when it is inline
	// (CERTPORTAL_APPROLE_SECRET_ID), which the portal cannot replace.
	Path string
}

// RotateAt is when the next secret id is due: at two thirds of this one's
// lifetime, so that a third is left for retries and alerts while the old one
// still works. Zero when it never expires.
func (id *SecretID) RotateAt() time.Time {
	if id.Expires.IsZero() {
		return time.Time{}
	}
	return id.Created.Add(id.Expires.Sub(id.Created) * 2 / 3)
}

// ErrSecretIDNotWritable: the secret id is inline, or its file's directory
// cannot be written (a read-only Kubernetes Secret volume, systemd's
// credentials directory). The portal then cannot rotate; it only alerts.
var ErrSecretIDNotWritable = errors.New("secret id location is not writable")

// rolePath is the portal's AppRole; its name comes from the login's token
// metadata, so no setting can point rotation at another role.
func (s *Service) rolePath(ctx context.Context) (string, error) {
	if _, err := s.Token(ctx); err != nil {
		return "", err
	}
	s.mu.Lock()
	name := s.roleName
	s.mu.Unlock()
	if name == "" {
		return "", errors.New("approle: the login did not name the role")
	}
	return "auth/" + strings.Trim(s.role.Mount, "/") + "/role/" + name, nil
}

// LookupSecretID looks up, with the portal's own token, the secret id it
// logs in with (re-read from its file, which another replica may have
// replaced). A secret id other than the one seen last time makes the next
// token renewal a login, so a replaced file is proved early, while the old
// secret id still works.
func (s *Service) LookupSecretID(ctx context.Context) (*SecretID, error) {
	secret, err := s.role.secretID()
	if err != nil {
		return nil, err
	}
	path, err := s.rolePath(ctx)
	if err != nil {
		return nil, fmt.Errorf("look up secret id: %w", err)
	}
	var look *vaultapi.Secret
	err = s.do(ctx, func(cl *vaultapi.Client) error {
		look, err = cl.Logical().WriteWithContext(ctx, path+"/secret-id/lookup", map[string]any{"secret_id": secret})
		return err
	})
	if err != nil {
		return nil, classify("look up secret id", err, ErrRefused)
	}
	id := &SecretID{Path: s.role.SecretIDFile}
	if look == nil || look.Data == nil {
		return id, nil
	}
	id.Accessor, _ = look.Data["secret_id_accessor"].(string)
	id.Created = parseVaultTime(look.Data["creation_time"])
	id.Expires = parseVaultTime(look.Data["expiration_time"])
	// Vault keeps an expired secret id until its tidy runs, and lookup
	// still shows it: expired is as gone as destroyed.
	id.Known = id.Expires.IsZero() || s.now().Before(id.Expires)
	s.mu.Lock()
	if s.seenAccessor != "" && s.seenAccessor != id.Accessor {
		s.relogin = true
	}
	s.seenAccessor = id.Accessor
	s.mu.Unlock()
	return id, nil
}

// parseVaultTime reads Vault's RFC 3339 times; Vault writes the zero time
// (year 1) for "never".
func parseVaultTime(v any) time.Time {
	str, _ := v.(string)
	t, err := time.Parse(time.RFC3339Nano, str)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// RotateSecretID issues the next secret id with the portal's own token and
// writes it where the portal reads it from (temp file and rename in the same
// directory, 0600: a reader never sees half a secret). The previous secret
// id is left alone: it stays valid until its own expiry, so a rotation never
// causes an outage, and the portal's policy has no destroy. The next token
// renewal logs in with the new one. metadata is stored with it in Vault.
//
// Nothing is generated when the location cannot be written
// (ErrSecretIDNotWritable): a secret id nobody can read would only be one
// more valid credential.
func (s *Service) RotateSecretID(ctx context.Context, metadata string) (*SecretID, error) {
	file := s.role.SecretIDFile
	if file == "" {
		return nil, fmt.Errorf("rotate secret id: it is set inline (CERTPORTAL_APPROLE_SECRET_ID): %w", ErrSecretIDNotWritable)
	}
	RemoveStaleSecretTemps(filepath.Dir(file), s.now(), s.log)
	probe, err := os.CreateTemp(filepath.Dir(file), SecretTempPrefix+"id-*")
	if err != nil {
		return nil, fmt.Errorf("rotate secret id: %w: %v", ErrSecretIDNotWritable, err)
	}
	// The probe becomes the new file: created 0600 by CreateTemp.
	tmp := probe.Name()
	defer os.Remove(tmp)

	path, err := s.rolePath(ctx)
	if err != nil {
		probe.Close()
		return nil, fmt.Errorf("rotate secret id: %w", err)
	}
	var gen *vaultapi.Secret
	err = s.do(ctx, func(cl *vaultapi.Client) error {
		gen, err = cl.Logical().WriteWithContext(ctx, path+"/secret-id", map[string]any{"metadata": metadata})
		return err
	})
	if err != nil {
		probe.Close()
		return nil, classify("generate secret id", err, ErrRefused)
	}
	secret := ""
	if gen != nil && gen.Data != nil {
		secret, _ = gen.Data["secret_id"].(string)
	}
	if secret == "" {
		probe.Close()
		return nil, fmt.Errorf("generate secret id: empty response: %w", ErrUnavailable)
	}
	next := &SecretID{Known: true, Path: file, Created: s.now()}
	next.Accessor, _ = gen.Data["secret_id_accessor"].(string)
	if ttl := seconds(gen.Data["secret_id_ttl"]); ttl > 0 {
		next.Expires = next.Created.Add(ttl)
	}
	// The new secret id exists from here on; if it cannot be put in place
	// it stays unused until its TTL (the error names its accessor so that
	// an operator can destroy it).
	_, werr := probe.WriteString(secret + "\n")
	if cerr := probe.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, file)
	}
	if werr == nil {
		if b, err := os.ReadFile(file); err != nil || strings.TrimSpace(string(b)) != secret {
			werr = fmt.Errorf("read back %s: it does not hold the new secret id (%v)", file, err)
		}
	}
	if werr != nil {
		return nil, fmt.Errorf("rotate secret id: write %s: %v (the new secret id, accessor %s, is unused; the current one stays in place)", file, werr, next.Accessor)
	}
	s.mu.Lock()
	s.relogin = true
	s.seenAccessor = next.Accessor
	s.mu.Unlock()
	s.log.InfoContext(ctx, "service identity: secret id rotated; the previous one stays valid until it expires",
		"accessor", next.Accessor, "expires", next.Expires)
	return next, nil
}

// seconds reads a Vault duration in seconds (a json.Number or a number).
func seconds(v any) time.Duration {
	var n int64
	if _, err := fmt.Sscan(fmt.Sprint(v), &n); err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// SecretTempPrefix starts the name of every temporary file a secret is
// written to before it is renamed into place (a rotation's secret id,
// setup's and rotate-secret-id's files): the file holds the live secret.
const SecretTempPrefix = ".certportal-secret-"

// staleSecretTemp is how old such a file must be before it counts as left
// by a crash: a write takes seconds, and another replica sharing the
// directory may be in the middle of one.
const staleSecretTemp = 10 * time.Minute

// RemoveStaleSecretTemps deletes the temporary secret files (SecretTempPrefix)
// in dir that a process killed between writing and renaming one left behind,
// each holding a valid secret. Only regular files of this process's user,
// older than staleSecretTemp, are taken; a symlink or anything else of that
// name is left alone. It logs each removal by name, never the content.
// Called before every write of the secret id and at start-up.
func RemoveStaleSecretTemps(dir string, now time.Time, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // the write that follows reports an unusable directory
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), SecretTempPrefix) {
			continue
		}
		fi, err := e.Info() // lstat: a symlink is not a regular file
		if err != nil || !fi.Mode().IsRegular() || now.Sub(fi.ModTime()) < staleSecretTemp {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
			continue
		}
		if err := os.Remove(path); err != nil {
			log.Warn("service identity: a leftover temporary secret file could not be removed", "file", path, "err", err)
			continue
		}
		log.Warn("service identity: removed a temporary secret file left by an interrupted write", "file", path, "modified", fi.ModTime().UTC())
	}
}
