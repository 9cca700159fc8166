package ui

import "testing"

// User-Agents as the browsers send them (2025-2026 versions).
const (
	uaWindowsChrome  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	uaWindowsFirefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
	uaMacSafari      = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15"
	uaMacFirefox     = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.7; rv:133.0) Gecko/20100101 Firefox/133.0"
	uaIPhone         = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
	uaIPhoneFirefox  = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/133.0 Mobile/15E148 Safari/605.1.15"
	uaAndroid        = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"
	uaAndroidFirefox = "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0"
	uaLinuxChromium  = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	uaLinuxFirefox   = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
)

func TestDetectPlatform(t *testing.T) {
	for _, tt := range []struct {
		name, ua, install, enc string
	}{
		{"windows chrome", uaWindowsChrome, "windows", "modern"},
		{"windows firefox", uaWindowsFirefox, "firefox", "modern"},
		{"mac safari", uaMacSafari, "macos", "compat"},
		{"mac firefox", uaMacFirefox, "firefox", "compat"},
		{"iphone", uaIPhone, "ios", "compat"},
		{"iphone firefox is safari underneath", uaIPhoneFirefox, "ios", "compat"},
		{"android", uaAndroid, "android", "compat"},
		{"android firefox uses the system store", uaAndroidFirefox, "android", "compat"},
		{"linux chromium", uaLinuxChromium, "linux", "modern"},
		{"linux firefox", uaLinuxFirefox, "firefox", "modern"},
		{"curl", "curl/8.5.0", "", "modern"},
		{"empty", "", "", "modern"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := detectPlatform(tt.ua)
			if c.InstallKey() != tt.install || c.DefaultEncryption() != tt.enc {
				t.Errorf("install %q enc %q, want %q %q", c.InstallKey(), c.DefaultEncryption(), tt.install, tt.enc)
			}
			steps := installSteps(c)
			if len(steps) != len(platforms) {
				t.Fatalf("%d platforms listed, want all %d", len(steps), len(platforms))
			}
			open := 0
			for _, p := range steps {
				if p.Open {
					open++
				}
			}
			if tt.install != "" && (steps[0].Key != tt.install || !steps[0].Open || open != 1) {
				t.Errorf("first platform %q open=%v (%d open), want %q unfolded", steps[0].Key, steps[0].Open, open, tt.install)
			}
			if tt.install == "" && open != 0 {
				t.Errorf("unknown client: %d platforms unfolded, want none", open)
			}
		})
	}
}
