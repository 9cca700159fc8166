package portal

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/store/sqlite"
)

// TestUserOfAddress: an address names the user Vault's case-insensitive
// match (strings.EqualFold) would have issued it for, and only that user.
func TestUserOfAddress(t *testing.T) {
	cases := []struct {
		name, addr, want string
	}{
		{"plain", "alice@example.com", "alice"},
		{"upper local part", "ALICE@example.com", "alice"},
		{"capital first letter", "Alice@example.com", "alice"},
		{"mixed-case domain", "alice@EXAMPLE.Com", "alice"},
		{"kelvin sign", "\u212Aate@example.com", "kate"},
		{"long s", "\u017Fam@example.com", "sam"},
		{"kelvin sign in the domain", "kate@example.\u212Aom", ""}, // k is not s, nor c
		{"dots, dashes, digits", "a.b-c_9@example.com", "a.b-c_9"},
		{"non-foldable non-ASCII (small capital A)", "\u1D00lice@example.com", ""},
		{"dotted capital I folds to no ASCII letter", "al\u0130ce@example.com", ""},
		{"dotless i folds to no ASCII letter", "al\u0131ce@example.com", ""},
		{"fullwidth letter", "\uFF41lice@example.com", ""},
		{"invalid UTF-8", "al\xffce@example.com", ""},
		{"wrong domain", "alice@example.org", ""},
		{"subdomain", "alice@mail.example.com", ""},
		{"domain suffix only", "alice@notexample.com", ""},
		{"two @", "alice@bob@example.com", ""},
		{"no @", "alice", ""},
		{"empty local part", "@example.com", ""},
		{"not a user name", "ops+alerts@example.com", ""},
		{"leading dot", ".alice@example.com", ""},
		{"too long", "a234567890123456789012345678901234567890123456789012345678901234x@example.com", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := userOfAddress(tc.addr, "example.com"); got != tc.want {
				t.Errorf("userOfAddress(%q) = %q, want %q", tc.addr, got, tc.want)
			}
		})
	}
	// The domain setting's own case does not matter either.
	if got := userOfAddress("alice@example.com", "Example.COM"); got != "alice" {
		t.Errorf("with domain Example.COM: %q", got)
	}
}

// TestFoldASCIIMatchesEqualFold: wherever the folded local part is a user
// name, Vault's strings.EqualFold agrees that the address is that user's,
// and wherever it is not, EqualFold matches no user name at all: r folds
// to a user-name rune exactly when EqualFold says it equals that rune.
// Every rune with a case folding is below U+20000 (the planes above hold
// CJK ideographs and private use), so that is the range checked.
func TestFoldASCIIMatchesEqualFold(t *testing.T) {
	var ascii []rune
	for a := rune(0); a < 0x80; a++ {
		if a >= 'a' && a <= 'z' || a >= '0' && a <= '9' || a == '.' || a == '_' || a == '-' {
			ascii = append(ascii, a)
		}
	}
	for r := rune(0); r < 0x20000; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		f, rs := foldASCII(r), string(r)
		for _, a := range ascii {
			if eq := strings.EqualFold(rs, string(a)); eq != (f == a) {
				t.Fatalf("rune %U: folds to %q, EqualFold with %q is %v", r, f, a, eq)
			}
		}
	}
}

// TestSearchUsersByAddress: helpdesk search by address finds the user an
// address names as Vault matches names, so a vault_only certificate's CN
// pasted as it is ("\u212Aate@EXAMPLE.com") finds kate; an address of
// another domain or no user finds nobody.
func TestSearchUsersByAddress(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/p.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	vlt := &userList{}
	vlt.set("kate", "sam", "katerina")
	s := NewService(nil, vlt, st, Options{UserpassMount: "userpass", PKIMount: "pki", EmailDomain: "example.com"},
		slog.New(slog.DiscardHandler))
	agent := &Identity{Username: "helen", Roles: []Role{RoleHelpdesk}}
	for _, tc := range []struct{ q, want string }{
		{"kate@example.com", "kate"},
		{"KATE@Example.COM", "kate"},
		{"\u212Aate@EXAMPLE.com", "kate"},
		{"\u017Fam@example.com", "sam"},
		{"kate@example.org", ""},
		{"ops+alerts@example.com", ""},
	} {
		got, err := s.SearchUsers(ctx, agent, tc.q)
		if err != nil {
			t.Fatalf("%q: %v", tc.q, err)
		}
		var names []string
		for _, u := range got {
			names = append(names, u.Username)
		}
		if want := []string{tc.want}; tc.want == "" && len(names) != 0 || tc.want != "" && !slices.Equal(names, want) {
			t.Errorf("search %q found %v, want %q", tc.q, names, tc.want)
		}
	}
}
