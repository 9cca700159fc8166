package portal

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// employees makes n candidates for each of the named employees.
func employees(counts map[string]int) []candidate {
	var todo []candidate
	names := make([]string, 0, len(counts))
	for u := range counts {
		names = append(names, u)
	}
	slices.Sort(names)
	for _, u := range names {
		for c := range counts[u] {
			// Issued in reverse serial order, a day apart: the oldest has
			// the highest serial, so an order by serial would not pass.
			nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, counts[u]-c)
			todo = append(todo, candidate{serial: fmt.Sprintf("%s-%02x", u, c), user: u, notBefore: nb})
		}
	}
	return todo
}

// withOne is extra with name's n certificates added.
func withOne(extra map[string]int, name string, n int) map[string]int {
	extra[name] = n
	return extra
}

// uniform is n employees with per certificates each.
func uniform(n, per int) map[string]int {
	m := map[string]int{}
	for u := range n {
		m[fmt.Sprintf("user%03d", u)] = per
	}
	return m
}

// TestPlanAutoRevokeBounds: the two bounds of automatic revocation with the
// defaults (CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX 5,
// CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX 20). An employee over the
// per-employee bound is held alone and named; the certificates of the
// employees left number at most MAX, or nothing is revoked. So a run never
// revokes more than MAX certificates (the review's finding: it could revoke
// MAX×MAX, and a restored or wrong database in a company of 20 certificate
// holders, 3 each, revoked 60 valid certificates at once), and no one
// employee can hold anyone else's.
func TestPlanAutoRevokeBounds(t *testing.T) {
	const perUser, limit = 5, 20
	for _, tc := range []struct {
		name       string
		counts     map[string]int
		wantAll    bool
		wantHeld   []HeldUser // held alone, by name
		wantRevoke int
	}{
		{name: "the review's case: 400 over 20 employees at 20 each: each held alone, none revoked",
			counts: uniform(20, 20), wantHeld: heldEach(uniform(20, 20))},
		{name: "400 over 100 employees at 4 each: hold all", counts: uniform(100, 4), wantAll: true},
		{name: "restored database: 60 over 20 employees at 3 each: hold all", counts: uniform(20, 3), wantAll: true},
		{name: "one employee with 6, another with 1: the 6 held and named, the 1 revoked",
			counts: map[string]int{"alice": 6, "bob": 1}, wantHeld: []HeldUser{{"alice", 6}}, wantRevoke: 1},
		{name: "5 employees at 5 each, 25 over 20: hold all", counts: uniform(5, 5), wantAll: true},
		{name: "4 employees at 5 each, 20: all revoked", counts: uniform(4, 5), wantRevoke: 20},
		{name: "one employee with 100 alone: held alone, never the hold of everything",
			counts: map[string]int{"alice": 100}, wantHeld: []HeldUser{{"alice", 100}}},
		{name: "the held employee does not count towards the total: 20 others revoked",
			counts: withOne(uniform(20, 1), "alice", 6), wantHeld: []HeldUser{{"alice", 6}}, wantRevoke: 20},
		{name: "21 others: hold all, the held employee's too",
			counts: withOne(uniform(21, 1), "alice", 6), wantAll: true},
		{name: "at the per-employee bound: revoked", counts: map[string]int{"alice": 5}, wantRevoke: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			todo := employees(tc.counts)
			p := planAutoRevoke(todo, nil, perUser, limit, len(todo)) // no cap to pass: TestPlanAutoRevokeOverCap
			t.Logf("%d candidates: revoke %d, held alone %d (%d employees), all %v", len(todo), len(p.revoke), len(p.held), len(p.heldUsers), p.all)
			if p.all != tc.wantAll {
				t.Errorf("hold all %v, want %v", p.all, tc.wantAll)
			}
			if !p.all { // a hold of everything revokes none, whatever else the plan says
				if len(p.revoke) != tc.wantRevoke {
					t.Errorf("revokes %d, want %d", len(p.revoke), tc.wantRevoke)
				}
				if len(p.revoke) > limit {
					t.Errorf("revokes %d certificates in one run, more than the limit of %d", len(p.revoke), limit)
				}
				if !slices.Equal(p.heldUsers, tc.wantHeld) {
					t.Errorf("held alone %v, want %v", p.heldUsers, tc.wantHeld)
				}
			}
			if len(p.revoke)+len(p.held) != len(todo) {
				t.Errorf("revoke %d + held %d != %d candidates", len(p.revoke), len(p.held), len(todo))
			}
			for _, c := range p.revoke {
				if slices.ContainsFunc(p.heldUsers, func(h HeldUser) bool { return h.Username == c.user }) {
					t.Errorf("%s of held %s is to be revoked", c.serial, c.user)
				}
			}
		})
	}
}

// heldEach is every employee of counts held alone, in name order.
func heldEach(counts map[string]int) []HeldUser {
	var out []HeldUser
	for u, n := range counts {
		out = append(out, HeldUser{Username: u, Certificates: n})
	}
	slices.SortFunc(out, func(a, b HeldUser) int { return strings.Compare(a.Username, b.Username) })
	return out
}

// TestPlanAutoRevokeOverCap: an employee held alone keeps at most the cap
// (CERTPORTAL_MAX_ACTIVE, 3 here) of their certificates issued around the
// portal, the newest; the older ones cannot be ones the portal handed out
// and are revoked, within what the run's bound leaves after the others'
// (review F3: minting past the per-employee bound kept every certificate
// until an operator acted). A hold of everything still revokes none.
func TestPlanAutoRevokeOverCap(t *testing.T) {
	const perUser, limit, maxActive = 5, 20, 3
	for _, tc := range []struct {
		name        string
		counts      map[string]int
		wantOverCap map[string]int // revoked for being past the cap, per employee
		wantHeld    []HeldUser     // left held
		wantRevoke  int            // within the per-employee bound
		wantAll     bool
	}{
		{name: "alice with 6, bob with 1: alice's 3 oldest revoked, 3 held; bob's revoked",
			counts: map[string]int{"alice": 6, "bob": 1}, wantOverCap: map[string]int{"alice": 3},
			wantHeld: []HeldUser{{"alice", 3}}, wantRevoke: 1},
		{name: "alice with 100 alone: 20 a run, 80 left for the next runs",
			counts: map[string]int{"alice": 100}, wantOverCap: map[string]int{"alice": 20}, wantHeld: []HeldUser{{"alice", 80}}},
		{name: "alice with 23 alone: 20 revoked, the 3 newest held",
			counts: map[string]int{"alice": 23}, wantOverCap: map[string]int{"alice": 20}, wantHeld: []HeldUser{{"alice", 3}}},
		{name: "others take the run's bound first: 20 others revoked, alice's 6 all held",
			counts: withOne(uniform(20, 1), "alice", 6), wantHeld: []HeldUser{{"alice", 6}}, wantRevoke: 20},
		{name: "18 others: 2 of alice's oldest revoked",
			counts: withOne(uniform(18, 1), "alice", 6), wantOverCap: map[string]int{"alice": 2},
			wantHeld: []HeldUser{{"alice", 4}}, wantRevoke: 18},
		{name: "two held employees share what is left, in name order",
			counts: map[string]int{"alice": 15, "bob": 15}, wantOverCap: map[string]int{"alice": 12, "bob": 8},
			wantHeld: []HeldUser{{"alice", 3}, {"bob", 7}}},
		{name: "hold of everything: nothing revoked, not even past the cap",
			counts: withOne(uniform(21, 1), "alice", 6), wantAll: true, wantHeld: []HeldUser{{"alice", 6}}, wantRevoke: 21},
	} {
		t.Run(tc.name, func(t *testing.T) {
			todo := employees(tc.counts)
			p := planAutoRevoke(todo, nil, perUser, limit, maxActive)
			if p.all != tc.wantAll {
				t.Errorf("hold all %v, want %v", p.all, tc.wantAll)
			}
			got := map[string]int{}
			for _, c := range p.overCap {
				got[c.user]++
			}
			if fmt.Sprint(got) != fmt.Sprint(orEmpty(tc.wantOverCap)) {
				t.Errorf("revoked past the cap %v, want %v", got, tc.wantOverCap)
			}
			if !slices.Equal(p.heldUsers, tc.wantHeld) || len(p.revoke) != tc.wantRevoke {
				t.Errorf("held %v, revoke %d; want %v, %d", p.heldUsers, len(p.revoke), tc.wantHeld, tc.wantRevoke)
			}
			if !p.all && len(p.revoke)+len(p.overCap) > limit {
				t.Errorf("a run revokes %d, more than the limit of %d", len(p.revoke)+len(p.overCap), limit)
			}
			if len(p.revoke)+len(p.overCap)+len(p.held) != len(todo) {
				t.Errorf("revoke %d + over the cap %d + held %d != %d candidates", len(p.revoke), len(p.overCap), len(p.held), len(todo))
			}
			// Those revoked past the cap are each employee's oldest: every
			// one is older than every certificate of theirs left held.
			for _, o := range p.overCap {
				for _, h := range p.held {
					if h.user == o.user && !o.notBefore.Before(h.notBefore) {
						t.Errorf("%s (from %s) revoked past the cap, but %s (from %s) is older and held", o.serial, o.notBefore, h.serial, h.notBefore)
					}
				}
			}
		})
	}
}

func orEmpty(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}

// TestPlanAutoRevokeStrangers: certificates naming no user of Vault's
// userpass mount count towards neither bound (made-up names cannot hold
// everyone's revocations) and are revoked, oldest first, with what the
// run's bound leaves after the employees' and those past the cap.
func TestPlanAutoRevokeStrangers(t *testing.T) {
	const perUser, limit, maxActive = 5, 20, 3
	for _, tc := range []struct {
		name                 string
		employees, strangers map[string]int
		wantRevoke, wantOver int
		wantStrangers        int
		wantAll              bool
	}{
		{name: "25 made-up names, bob with 1: bob's and 19 of them", employees: map[string]int{"bob": 1},
			strangers: uniform(25, 1), wantRevoke: 1, wantStrangers: 19},
		{name: "20 employees take the bound: no stranger this run, no hold", employees: uniform(20, 1),
			strangers: map[string]int{"ghost": 3}, wantRevoke: 20},
		{name: "past the cap goes first: alice's 3 oldest, then 16 strangers", employees: map[string]int{"alice": 6, "bob": 1},
			strangers: uniform(30, 1), wantRevoke: 1, wantOver: 3, wantStrangers: 16},
		{name: "one made-up name with 40: 20 a run, no per-employee hold", strangers: map[string]int{"ghost": 40}, wantStrangers: 20},
		{name: "hold of everything: no stranger either", employees: uniform(21, 1), strangers: map[string]int{"ghost": 1},
			wantRevoke: 21, wantAll: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			strangers := employees(tc.strangers)
			p := planAutoRevoke(employees(orEmpty(tc.employees)), strangers, perUser, limit, maxActive)
			if p.all != tc.wantAll || len(p.revoke) != tc.wantRevoke || len(p.overCap) != tc.wantOver || len(p.strangers) != tc.wantStrangers {
				t.Errorf("all %v, revoke %d, past the cap %d, strangers %d; want %v, %d, %d, %d",
					p.all, len(p.revoke), len(p.overCap), len(p.strangers), tc.wantAll, tc.wantRevoke, tc.wantOver, tc.wantStrangers)
			}
			if !p.all && len(p.revoke)+len(p.overCap)+len(p.strangers) > limit {
				t.Errorf("a run revokes %d, more than the limit of %d", len(p.revoke)+len(p.overCap)+len(p.strangers), limit)
			}
			for _, c := range p.strangers {
				for _, o := range strangers {
					if o.notBefore.Before(c.notBefore) && !slices.ContainsFunc(p.strangers, func(x candidate) bool { return x.serial == o.serial }) {
						t.Errorf("stranger %s revoked while the older %s waits", c.serial, o.serial)
					}
				}
			}
		})
	}
}
