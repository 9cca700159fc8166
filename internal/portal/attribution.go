package portal

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// userOfAddress is the portal user an address (a certificate's CN or email
// SAN) names, matched as Vault's PKI matches it: "" when it names none.
//
// Vault's users' role admits a name when strings.EqualFold(name,
// "<alias>@<domain>") holds (Vault 1.21 issuing.ValidateNames), so a user
// gets a certificate for "Alice@EXAMPLE.com" or "\u212Aate@example.com"
// (KELVIN SIGN folds to 'k') as readily as for their own exact address.
// An exact, case-sensitive match here would leave those unattributed:
// never revoked automatically, outside every employee's bound. So the
// domain is compared with strings.EqualFold, as Vault does, and the local
// part is folded rune by rune to the ASCII rune in its simple-folding
// orbit (unicode.SimpleFold: 'K', 'k' and U+212A are one orbit, 's', 'S'
// and U+017F LONG S another), lower case. The alias names Vault compares
// against are portal user names, lower-case ASCII (usernamePattern), and
// each orbit holds at most one lower-case ASCII rune, so the folded name
// is the one user whose identity Vault matched; a rune whose orbit has no
// ASCII rune is kept, and fails usernamePattern: no user.
func userOfAddress(addr, domain string) string {
	if !inDomain(addr, domain) {
		return ""
	}
	local, _, _ := strings.Cut(addr, "@")
	user := strings.Map(foldASCII, local)
	if !usernamePattern.MatchString(user) {
		return ""
	}
	return user
}

// inDomain reports whether addr is one address in domain, as Vault's
// match sees the domain (case-insensitively), whoever its local part names.
func inDomain(addr, domain string) bool {
	_, dom, ok := strings.Cut(addr, "@")
	return ok && !strings.Contains(dom, "@") && strings.EqualFold(dom, domain)
}

// foldASCII is r's lower-case ASCII rune under Unicode simple folding, or
// r itself when its orbit holds none. (strings.Map turns invalid UTF-8
// into U+FFFD first, which folds to nothing.)
func foldASCII(r rune) rune {
	if r < utf8.RuneSelf {
		return unicode.ToLower(r)
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < utf8.RuneSelf {
			return unicode.ToLower(f)
		}
	}
	return r
}
