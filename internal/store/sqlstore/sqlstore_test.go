package sqlstore

import "testing"

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"sequential", `SELECT a FROM t WHERE b = ? AND c > ? LIMIT ?`, `SELECT a FROM t WHERE b = $1 AND c > $2 LIMIT $3`},
		{"numbered", `SELECT ?1 + ?2, ?1, CAST(?3 AS TEXT)`, `SELECT $1 + $2, $1, CAST($3 AS TEXT)`},
		{"quoted left alone", `SELECT '?', "a?b" FROM t WHERE x = ? AND y <> ''`, `SELECT '?', "a?b" FROM t WHERE x = $1 AND y <> ''`},
		{"no placeholders", `SELECT 1`, `SELECT 1`},
		{"ten and more", `VALUES(?,?,?,?,?,?,?,?,?,?,?)`, `VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Rebind(tc.in); got != tc.want {
				t.Errorf("Rebind(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		ok             bool
	}{
		{"ascii", "bo", "bp", true},
		{"multi-byte last", "zé", "zê", true},
		{"max rune dropped", "a\U0010FFFF", "b", true},
		{"before surrogates", "a\uD7FF", "a\uE000", true},
		{"empty", "", "", false},
		{"max runes only", "\U0010FFFF\U0010FFFF", "", false},
		{"stray byte", "a\xfe", "a\xff", true},
		{"stray 0xff dropped", "a\xff", "b", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := prefixEnd(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("prefixEnd(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}
