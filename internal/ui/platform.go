package ui

import (
	"strings"
)

// Platforms the install steps are written for, in the order the page lists
// them. The keys name catalog entries: install.<key>.title, .s1 … and .avoid.
var platforms = []installPlatform{
	{Key: "windows", Steps: 4},
	{Key: "macos", Steps: 4},
	{Key: "ios", Steps: 4},
	{Key: "android", Steps: 4},
	{Key: "linux", Steps: 4},
	{Key: "firefox", Steps: 4},
}

// installPlatform is one platform's install steps on the page.
type installPlatform struct {
	Key   string
	Steps int
	Open  bool // the visitor's own platform: shown unfolded, listed first
}

// StepKeys lists the platform's step keys for the template.
func (p installPlatform) StepKeys() []string {
	out := make([]string, p.Steps)
	for i := range out {
		out[i] = "install." + p.Key + ".s" + string(rune('1'+i))
	}
	return out
}

// client is what the User-Agent says about where the .p12 will be opened.
// It only chooses defaults and which instructions come first: every choice
// stays one click away, so a wrong guess costs the user nothing.
type clientPlatform struct {
	OS      string // windows, macos, ios, android, linux, or "" when unknown
	Firefox bool   // Firefox on a desktop: it keeps its own certificate store
}

// detectPlatform reads a User-Agent. Order matters: iPadOS and Android
// browsers also claim "Mac OS X" or "Linux".
func detectPlatform(ua string) clientPlatform {
	var c clientPlatform
	switch {
	case strings.Contains(ua, "iPhone"), strings.Contains(ua, "iPad"), strings.Contains(ua, "iPod"):
		c.OS = "ios"
	case strings.Contains(ua, "Android"):
		c.OS = "android"
	case strings.Contains(ua, "Windows"):
		c.OS = "windows"
	case strings.Contains(ua, "Macintosh"), strings.Contains(ua, "Mac OS X"):
		c.OS = "macos"
	case strings.Contains(ua, "Linux"), strings.Contains(ua, "CrOS"), strings.Contains(ua, "X11"):
		c.OS = "linux"
	}
	// Firefox on iOS is Safari underneath and on Android uses the system
	// store; elsewhere it has a store of its own.
	c.Firefox = strings.Contains(ua, "Firefox/") && c.OS != "ios" && c.OS != "android"
	return c
}

// InstallKey is the platform whose install steps fit this client best.
func (c clientPlatform) InstallKey() string {
	if c.Firefox {
		return "firefox"
	}
	return c.OS
}

// DefaultEncryption is the form's preselected file encryption: macOS, iOS
// and Android cannot read AES-encrypted .p12 files (they report a wrong
// password), so they get compat; everything else gets modern.
func (c clientPlatform) DefaultEncryption() string {
	switch c.OS {
	case "macos", "ios", "android":
		return "compat"
	}
	return "modern"
}

// installSteps orders the platforms for c: its own first and unfolded.
func installSteps(c clientPlatform) []installPlatform {
	own := c.InstallKey()
	out := make([]installPlatform, 0, len(platforms))
	for _, p := range platforms {
		if p.Key == own {
			p.Open = true
			out = append([]installPlatform{p}, out...)
			continue
		}
		out = append(out, p)
	}
	return out
}
