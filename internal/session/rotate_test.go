package session_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/sessions"

	"github.com/certportal/certportal/internal/session"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/postgres"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// rotateStores opens one shared store per dialect: a SQLite file and a
// PostgreSQL database, two handles each (two replicas).
func rotateStores(t *testing.T, db string) (a, b store.Sessions) {
	t.Helper()
	ctx := context.Background()
	if db == "sqlite" {
		path := filepath.Join(t.TempDir(), "sessions.db")
		var out [2]store.Sessions
		for i := range out {
			st, err := sqlite.Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			out[i] = st
		}
		return out[0], out[1]
	}
	dsn := pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
	var out [2]store.Sessions
	for i := range out {
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		out[i] = st
	}
	return out[0], out[1]
}

func hash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

func withCookies(resp *httptest.ResponseRecorder, r *http.Request) *http.Request {
	n := httptest.NewRequest("GET", "/", nil)
	set := map[string]string{}
	for _, c := range resp.Result().Cookies() {
		set[c.Name] = c.Value
	}
	for _, c := range r.Cookies() {
		if _, ok := set[c.Name]; !ok {
			set[c.Name] = c.Value
		}
	}
	for k, v := range set {
		n.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	return n
}

// TestRotateRace: two requests of one session, on two replicas, both load
// it under the old id and both rotate it (both saw the same new role). The
// slower one follows the first one's move instead of ending logged out;
// both answers carry a cookie that names the session. The old id names it
// for session.MoveGrace, then nothing — and its forwarding row goes in
// the sweep without telling EndFunc (no token of its own).
func TestRotateRace(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			rig := newRotateRig(t, db)
			ma, mb, old := rig.a, rig.b, rig.old

			// Both load the session before either rotates.
			ra, rb := old.Clone(context.Background()), old.Clone(context.Background())
			a, err := ma.New(ra, ma.Name())
			if err != nil || a.IsNew {
				t.Fatalf("request a: %v new %v", err, a.IsNew)
			}
			b, err := mb.New(rb, mb.Name())
			if err != nil || b.IsNew {
				t.Fatalf("request b: %v new %v", err, b.IsNew)
			}
			oldID := a.ID
			a.Values["roles"] = "helpdesk"
			b.Values["roles"] = "helpdesk"
			wa, wb := httptest.NewRecorder(), httptest.NewRecorder()
			if err := ma.Rotate(ra, wa, a); err != nil {
				t.Fatal(err)
			}
			if err := mb.Rotate(rb, wb, b); err != nil {
				t.Fatalf("the slower rotation: %v, want it to follow the first", err)
			}
			if a.ID == oldID || b.ID != a.ID {
				t.Fatalf("ids after both rotations: old %q, a %q, b %q: want both on a's new id", oldID, a.ID, b.ID)
			}
			for name, w := range map[string]*httptest.ResponseRecorder{"a": wa, "b": wb} {
				got, err := ma.New(withCookies(w, old), ma.Name())
				if err != nil || got.IsNew || got.ID != a.ID || got.Values["roles"] != "helpdesk" {
					t.Fatalf("cookie of answer %s: %v, new %v, id ok %v, values %v", name, err, got.IsNew, got.ID == a.ID, got.Values)
				}
			}
		})
	}
}

// TestRotateGrace: the cookie of an id the session moved away from (the
// answer carrying the new one lost) names the session for
// session.MoveGrace, and Reissue gives it the new cookie; after the grace
// it names nothing, and its forwarding row goes — in the sweep without
// telling EndFunc (no token of its own), or on its first use.
func TestRotateGrace(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			rig := newRotateRig(t, db)
			ma, mb, old := rig.a, rig.b, rig.old
			clock, ends := &rig.clock, &rig.ends
			ra := old.Clone(context.Background())
			a, err := ma.New(ra, ma.Name())
			if err != nil || a.IsNew {
				t.Fatalf("load: %v", err)
			}
			wa := httptest.NewRecorder()
			if err := ma.Rotate(ra, wa, a); err != nil {
				t.Fatal(err)
			}
			if mb.Moved(withCookies(wa, old), httptest.NewRecorder(), a) {
				t.Fatal("the new cookie seen as moved")
			}

			// The old cookie within the grace: the session, and Moved.
			clock.Add(int64(session.MoveGrace - time.Second))
			fwd := old.Clone(context.Background())
			got, err := mb.New(fwd, mb.Name())
			if err != nil || got.IsNew || got.ID != a.ID {
				t.Fatalf("old cookie within the grace: %v, new %v", err, got.IsNew)
			}
			wf := httptest.NewRecorder()
			if !mb.Moved(fwd, wf, got) {
				t.Fatal("old cookie within the grace: not seen as moved")
			}
			if err := mb.Reissue(wf, got); err != nil {
				t.Fatal(err)
			}
			if again, err := ma.New(withCookies(wf, old), ma.Name()); err != nil || again.ID != a.ID {
				t.Fatalf("reissued cookie: %v", err)
			}

			// After the grace: the sweep deletes the forwarding row and
			// ends no session; the old cookie names nothing.
			clock.Add(int64(2 * time.Second))
			if n, err := ma.Sweep(context.Background()); err != nil || n != 1 || ends.Load() != 0 {
				t.Fatalf("sweep after the grace: %d deleted, %v, %d ended; want 1, none", n, err, ends.Load())
			}
			if got, err := ma.New(old.Clone(context.Background()), ma.Name()); err != nil || !got.IsNew {
				t.Fatalf("old cookie after the grace: %v, new %v", err, got.IsNew)
			}
			// A second move, its forwarding row used only after the
			// grace: deleted on that use.
			cur := withCookies(wa, old)
			c, err := ma.New(cur, ma.Name())
			if err != nil || c.IsNew {
				t.Fatalf("new cookie after the grace: %v", err)
			}
			prev := c.ID
			if err := ma.Rotate(cur, httptest.NewRecorder(), c); err != nil {
				t.Fatal(err)
			}
			clock.Add(int64(session.MoveGrace))
			if got, err := mb.New(cur.Clone(context.Background()), mb.Name()); err != nil || !got.IsNew {
				t.Fatalf("second old cookie after the grace: %v, new %v", err, got.IsNew)
			}
			if _, err := rig.store.GetSession(context.Background(), hash(prev)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("forwarding row after its use past the grace: %v, want it deleted", err)
			}
		})
	}
}

// rotateRig is two replicas' session managers on one store (db), with a
// clock the test moves and a count of EndFunc calls, and one session of
// hank's saved by the first: saved, and old, a request carrying its cookie.
type rotateRig struct {
	a, b  *session.Manager
	store store.Sessions // the first replica's handle
	clock atomic.Int64
	ends  atomic.Int64
	saved *sessions.Session
	old   *http.Request
}

func newRotateRig(t *testing.T, db string) *rotateRig {
	t.Helper()
	rig := &rotateRig{}
	sa, sb := rotateStores(t, db)
	rig.store = sa
	rig.clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, rig.clock.Load()) }
	key := make([]byte, 32)
	mgr := func(st store.Sessions) *session.Manager {
		m, err := session.New(st, session.Options{Key: key, Idle: time.Hour, Absolute: 2 * time.Hour, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		m.OnEnd(func(context.Context, map[any]any, string, bool) error { rig.ends.Add(1); return nil })
		return m
	}
	rig.a, rig.b = mgr(sa), mgr(sb)
	r0 := httptest.NewRequest("GET", "/", nil)
	s, err := rig.a.New(r0, rig.a.Name())
	if err != nil {
		t.Fatal(err)
	}
	s.Values["user"] = "hank"
	w0 := httptest.NewRecorder()
	if err := rig.a.Save(r0, w0, s); err != nil {
		t.Fatal(err)
	}
	rig.saved, rig.old = s, withCookies(w0, r0)
	return rig
}
