package main

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/testenv"
)

// rawIssue sends POST /certificates with the browser's session cookie over a
// connection of its own and hands the connection to hangUp, which decides
// how the client vanishes. rcvbuf > 0 sets the client's receive buffer
// before connecting, so that the portal's bytes stay unacknowledged until
// the client reads them.
func rawIssue(t *testing.T, b *client, rcvbuf int, hangUp func(net.Conn), headers ...string) {
	t.Helper()
	u, err := url.Parse(b.base)
	if err != nil {
		t.Fatal(err)
	}
	var cookies []string
	for _, c := range b.c.Jar.Cookies(u) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := d.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	body := issueForm(p12Password, p12Password, "720h0m0s", "modern").Encode()
	extra := ""
	for i := 0; i+1 < len(headers); i += 2 {
		extra += headers[i] + ": " + headers[i+1] + "\r\n"
	}
	req := fmt.Sprintf("POST /certificates HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n%s\r\n%s",
		u.Host, strings.Join(cookies, "; "), len(body), extra, body)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	hangUp(conn)
}

// serialsOf lists a user's inventory rows.
func serialsOf(t *testing.T, db *sql.DB, user string) map[string]bool {
	t.Helper()
	rows, err := db.Query(`SELECT serial FROM certificates WHERE username = ?`, user)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out[s] = true
	}
	return out
}

// waitNewSerial waits for the one inventory row of user that before lacks.
func waitNewSerial(t *testing.T, db *sql.DB, user string, before map[string]bool) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var fresh []string
		for s := range serialsOf(t, db, user) {
			if !before[s] {
				fresh = append(fresh, s)
			}
		}
		switch {
		case len(fresh) == 1:
			return fresh[0]
		case len(fresh) > 1:
			t.Fatalf("%d new inventory rows for %s, want 1: %v", len(fresh), user, fresh)
		case time.Now().After(deadline):
			t.Fatalf("no inventory row for %s within 60s of the client hanging up: the issuance did not complete", user)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// downloadEvent waits for the download event of serial and returns its
// outcome and details.
func downloadEvent(t *testing.T, db *sql.DB, serial string) (string, map[string]string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var outcome, details string
		err := db.QueryRow(`SELECT outcome, details FROM audit_events WHERE action = ? AND serial = ?`, audit.ActionDownload, serial).Scan(&outcome, &details)
		if err == nil {
			d := map[string]string{}
			if err := json.Unmarshal([]byte(details), &d); err != nil {
				t.Fatal(err)
			}
			return outcome, d
		}
		if err != sql.ErrNoRows {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event for %s within 30s", audit.ActionDownload, serial)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// regularFiles lists the regular files this process holds open, outside
// the directories given.
func regularFiles(t *testing.T, except ...string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "/dev/") || strings.HasPrefix(target, "/proc/") {
			continue
		}
		skip := false
		for _, dir := range except {
			skip = skip || strings.HasPrefix(target, dir+"/")
		}
		if !skip {
			out = append(out, target)
		}
	}
	sort.Strings(out)
	return out
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestClientVanishes: a client that hangs up right after sending POST
// /certificates, and one that takes a few bytes of the answer through a
// tiny receive buffer and hangs up, still get their certificate issued to
// the end — in Vault, in the inventory and in the trail — and the trail
// says the file was not delivered; a client that reads the whole file is
// recorded as delivered. Nothing is written to disk but the database, and
// the chain verifies.
func TestClientVanishes(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the portal runs in this process
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MAX_ACTIVE": "10"})
	dbDir := filepath.Dir(p.DB)
	openBefore := regularFiles(t, dbDir)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	db := openSQLite(t, p.DB)

	midBody := func(c net.Conn) {
		// The status line arrived, so the portal is writing the file;
		// the rest stays unread in the tiny buffer and the close resets
		// the connection.
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		line, err := bufio.NewReaderSize(c, 16).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Errorf("first line of the answer: %q %v", line, err)
		}
		c.Close()
	}
	cases := []struct {
		name    string
		rcvbuf  int
		hangUp  func(net.Conn)
		headers []string
	}{
		{"closes right after the request", 0, func(c net.Conn) { c.Close() }, nil},
		{"closes mid-body", 1024, midBody, nil},
		// A browser's own form post gets the page with the file (savePage):
		// its trail is the download's.
		{"closes mid-page", 1024, midBody, navigation},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := serialsOf(t, db, "alice")
			rawIssue(t, alice, tc.rcvbuf, tc.hangUp, tc.headers...)
			serial := waitNewSerial(t, db, "alice", before)
			var issued int
			if err := db.QueryRow(`SELECT count(*) FROM audit_events WHERE action = ? AND outcome = ? AND serial = ?`,
				audit.ActionIssue, audit.OutcomeSuccess, serial).Scan(&issued); err != nil || issued != 1 {
				t.Errorf("issue events for %s: %d %v, want 1", serial, issued, err)
			}
			outcome, d := downloadEvent(t, db, serial)
			t.Logf("%s: %s %v", serial, outcome, d)
			if outcome != audit.OutcomeNotDelivered || d["reason"] == "" || d["sent_bytes"] == "" {
				t.Errorf("download event of %s: %s %v, want %s with a reason and the bytes sent", serial, outcome, d, audit.OutcomeNotDelivered)
			}
			if revokedInVault(t, v, serial) {
				t.Errorf("%s is revoked in Vault; the issuance record stays and so does the certificate", serial)
			}
			// No file reached this session: its dashboard does not say
			// "your certificate is ready, install it".
			if hasReady(alice.get("/").Body) {
				t.Errorf("after %s: the dashboard says the certificate is ready", tc.name)
			}
		})
	}

	t.Run("reads the whole file", func(t *testing.T) {
		serial := alice.issue("modern")
		if outcome, d := downloadEvent(t, db, serial); outcome != audit.OutcomeSuccess {
			t.Errorf("download event of a file the client read: %s %v, want success", outcome, d)
		}
		if !hasReady(alice.get("/").Body) {
			t.Error("a file the client read: no \"ready\" on the dashboard")
		}
	})

	if r := alice.get("/"); r.StatusCode != http.StatusOK {
		t.Errorf("dashboard after the hang-ups: %d", r.StatusCode)
	}
	if left := listDir(t, tmp); len(left) != 0 {
		t.Errorf("the portal left files in TMPDIR: %v", left)
	}
	for _, name := range listDir(t, dbDir) {
		if !strings.HasPrefix(name, filepath.Base(p.DB)) {
			t.Errorf("the portal wrote %s beside its database", name)
		}
	}
	if after := regularFiles(t, dbDir); strings.Join(after, "\n") != strings.Join(openBefore, "\n") {
		t.Errorf("open files outside the database's directory changed:\nbefore %v\nafter  %v", openBefore, after)
	}
	out, err := verifyChain(p.DB)
	if err != nil || !strings.Contains(out, "audit chain verified") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	t.Log(strings.TrimSpace(out))
}
