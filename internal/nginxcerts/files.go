package nginxcerts

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// staged is one file's wanted content.
type staged struct {
	path string
	data []byte
	mode os.FileMode
	tmp  string // set while its new content waits under a temporary name
}

// writeFiles replaces each file whose content or mode differs from what is
// wanted, and reports which it replaced. Every new content is first written
// and synced under a temporary name in the same directory; only when all of
// them are on disk are they renamed into place, so Nginx never reads half a
// file and a failure while writing leaves every file as it was.
func writeFiles(files []staged) (changed []bool, err error) {
	changed = make([]bool, len(files))
	defer func() {
		if err != nil {
			for _, f := range files {
				if f.tmp != "" {
					os.Remove(f.tmp)
				}
			}
		}
	}()
	for i := range files {
		f := &files[i]
		if unchanged(f.path, f.data, f.mode) {
			continue
		}
		if f.tmp, err = writeTemp(f.path, f.data, f.mode); err != nil {
			return nil, err
		}
		changed[i] = true
	}
	dirs := map[string]bool{}
	for i := range files {
		f := &files[i]
		if f.tmp == "" {
			continue
		}
		if err = os.Rename(f.tmp, f.path); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.path, err)
		}
		f.tmp = ""
		dirs[filepath.Dir(f.path)] = true
	}
	for d := range dirs {
		syncDir(d)
	}
	return changed, nil
}

func unchanged(path string, data []byte, mode os.FileMode) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
		return false
	}
	cur, err := os.ReadFile(path)
	return err == nil && bytes.Equal(cur, data)
}

// writeTemp writes data to a new temporary file beside path and returns its name.
func writeTemp(path string, data []byte, mode os.FileMode) (string, error) {
	// The name starts with a dot so that an include glob such as *.pem never
	// picks up a file that is still being written.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	// CreateTemp makes the file 0600, so a key is never readable by others,
	// not even for a moment; the mode is widened only for public files.
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return f.Name(), nil
}

// syncDir makes the renames durable. It is best effort: some file systems
// cannot sync a directory, and the files themselves are already complete.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
