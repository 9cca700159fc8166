package portal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Device cookies (OWASP's "device cookie" defence against lockout abuse):
// a browser that completed a login for a user carries a token, signed by
// the portal, that binds that user's normalised name to a random nonce and
// the time it was issued. The per-username limit exists to stop strangers
// guessing one account's password; a stranger can also use it to keep the
// account's owner out. A browser that presents a valid token for the name
// it logs in as is not a stranger, so it may try past that limit — within
// its own per-device limit and within the headroom below Vault's lockout
// (see takeUserAttempt).
//
// The token holds no secret and no name: it is
//
//	v1.<nonce, base64url>.<issued, unix seconds>.<HMAC-SHA256, base64url>
//
// and the MAC covers the name, so a token is worth nothing for another
// user. It is stateless: the portal stores only a per-device failure count
// under a keyed hash of the nonce. Changing the session key (from which
// DeviceKey is derived) invalidates every token at once.

// DefaultDeviceTTL is how long a device token is honoured after the login
// that issued it.
const DefaultDeviceTTL = 180 * 24 * time.Hour

const (
	deviceVersion  = "v1"
	deviceNonceLen = 16
	// deviceClockSkew tolerates replicas whose clocks differ a little: a
	// token issued by one may look a few seconds "from the future" to
	// another.
	deviceClockSkew = 5 * time.Minute
)

var b64 = base64.RawURLEncoding

// devicesOn reports whether device tokens are issued and honoured: only
// with a per-username limit to be exempted from.
func (s *Service) devicesOn() bool {
	return s.opts.LoginDeviceMaxFailures > 0 && s.opts.LoginUserMaxFailures > 0 && s.opts.LoginUserWindow > 0
}

// DeviceTokenTTL is how long a device token lives (the cookie's Max-Age).
func (s *Service) DeviceTokenTTL() time.Duration { return s.opts.DeviceTTL }

// DeviceToken mints a device token for username, who has just completed
// their whole login (password, and code when MFA applies). "" when device
// tokens are off.
func (s *Service) DeviceToken(username string) string {
	if !s.devicesOn() {
		return ""
	}
	nonce := make([]byte, deviceNonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return "" // no token: the browser is treated as any other
	}
	n := b64.EncodeToString(nonce)
	iat := strconv.FormatInt(s.now().Unix(), 10)
	return deviceVersion + "." + n + "." + iat + "." + b64.EncodeToString(s.deviceMAC(NormalizeUsername(username), n, iat))
}

func (s *Service) deviceMAC(username, nonce, iat string) []byte {
	m := hmac.New(sha256.New, s.opts.DeviceKey)
	for _, part := range []string{"certportal device token " + deviceVersion, username, nonce, iat} {
		m.Write([]byte(part))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// checkDevice returns the nonce of token when it is a token this portal
// (or a replica with the same key) issued for username, not older than
// DeviceTTL; ok is false for anything else — absent, malformed, tampered
// with, expired, or another user's.
func (s *Service) checkDevice(token, username string, now time.Time) (nonce string, ok bool) {
	if token == "" || len(token) > 256 || !s.devicesOn() {
		return "", false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 4 || parts[0] != deviceVersion {
		return "", false
	}
	if raw, err := b64.DecodeString(parts[1]); err != nil || len(raw) != deviceNonceLen {
		return "", false
	}
	mac, err := b64.DecodeString(parts[3])
	if err != nil || !hmac.Equal(mac, s.deviceMAC(username, parts[1], parts[2])) {
		return "", false
	}
	iat, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", false
	}
	issued := time.Unix(iat, 0)
	if issued.After(now.Add(deviceClockSkew)) || now.Sub(issued) >= s.opts.DeviceTTL {
		return "", false
	}
	return parts[1], true
}

// deviceAttemptKey is the store key of a device's failure count: a keyed
// hash of the nonce, so the database holds nothing of the cookie.
func (s *Service) deviceAttemptKey(nonce string) string {
	return "device:" + s.nameHash("device-attempts", nonce)
}
