package portal

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on the text fields the portal accepts, in bytes.
const (
	MaxTicketLen   = 64
	MaxUsernameLen = 64
	MaxSearchLen   = 254 // a name, an email address or a serial
	MaxFilterLen   = 128
)

// CheckText is the one check every text field a request carries passes
// before anything else happens — before Vault is asked and before the store
// sees it: valid UTF-8, no control character, at most max bytes. Both stores
// then hold the same text (PostgreSQL refuses NUL and invalid UTF-8 that
// SQLite takes), and nothing Vault did can be left unrecorded because the
// database refused a byte of it. Bidi and other invisible formatting
// characters (Unicode Cf: U+202E, U+200B, U+2066–U+2069, U+FEFF…) and the
// line and paragraph separators are refused too: a ticket or name has no use
// for them, and a raw one would reorder text for every later reader of the
// value (the JSON Lines export keeps values byte for byte). Values that are
// not typed into a form (a user agent) are escaped where they are recorded
// and shown instead (audit.Clean).
func CheckText(field, v string, max int) error {
	if len(v) > max || !utf8.ValidString(v) || strings.IndexFunc(v, hiddenText) >= 0 {
		return Invalid(field, "error.text_invalid")
	}
	return nil
}

// hiddenText is what CheckText refuses besides invalid UTF-8.
func hiddenText(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

// CheckPassword refuses a .p12 file password PKCS#12 cannot carry, before
// Vault issues anything: the file's MAC key is derived from the password as
// a NUL-terminated BMPString, so a character outside the Basic Multilingual
// Plane (an emoji) fails the encoding after the certificate exists, a NUL
// would end the password early in other readers, and invalid UTF-8 would
// silently become U+FFFD. The password itself is never echoed or recorded.
func CheckPassword(p string) error {
	if !utf8.ValidString(p) || strings.IndexFunc(p, func(r rune) bool { return unicode.IsControl(r) || r > 0xffff }) >= 0 {
		return Invalid("password", "error.password_chars")
	}
	return nil
}
