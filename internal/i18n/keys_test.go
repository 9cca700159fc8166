package i18n

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCodeKeysInCatalog: every message key the Go code names ("error.…",
// "notice.…") is in the catalog. A missing one reaches the user as the key
// itself: the 503 page of a failed audit write said "error.audit_unavailable".
func TestCodeKeysInCatalog(t *testing.T) {
	root := filepath.Join("..", "..")
	key := regexp.MustCompile(`"((?:error|notice)\.[a-z0-9_]+)"`)
	for _, dir := range []string{"internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range key.FindAllStringSubmatch(string(b), -1) {
				if !Has(English, m[1]) {
					t.Errorf("%s names %q, which the catalog lacks", path, m[1])
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
