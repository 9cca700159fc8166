package ui

import (
	"net/http/httptest"
	"testing"
)

// TestFileBytesIn: the trail's sent_bytes for a save page cut off after n
// of its bytes count only the file's base64 that got out, whole groups.
func TestFileBytesIn(t *testing.T) {
	const at, size = 100, 10 // base64 of 10 bytes: 16 characters from 100
	for _, tc := range []struct {
		name    string
		n, want int
	}{
		{"nothing sent", 0, 0},
		{"cut before the file", 99, 0},
		{"cut at the file", 100, 0},
		{"one group", 104, 3},
		{"one group and a bit", 106, 3},
		{"all but the last group", 112, 9},
		{"the whole page", 500, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fileBytesIn(tc.n, at, size); got != tc.want {
				t.Errorf("fileBytesIn(%d, %d, %d) = %d, want %d", tc.n, at, size, got, tc.want)
			}
		})
	}
}

// TestNavigated: only a browser's own top-level navigation gets the save
// page; the page script's fetch and clients without the header get the file.
func TestNavigated(t *testing.T) {
	for mode, want := range map[string]bool{"navigate": true, "cors": false, "same-origin": false, "no-cors": false, "": false} {
		r := httptest.NewRequest("POST", "/certificates", nil)
		if mode != "" {
			r.Header.Set("Sec-Fetch-Mode", mode)
		}
		if got := navigated(r); got != want {
			t.Errorf("Sec-Fetch-Mode %q: navigated %v, want %v", mode, got, want)
		}
	}
}
