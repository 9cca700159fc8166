package ui

import (
	"net/http/httptest"
	"testing"

	"github.com/certportal/certportal/internal/config"
)

func TestClientIP(t *testing.T) {
	proxies, err := config.ParsePrefixes("10.0.0.0/8, 192.0.2.7, 2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no proxies configured: peer, header ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"untrusted peer cannot claim an address", "203.0.113.5:4000", []string{"10.1.1.1"}, "203.0.113.5"},
		{"trusted proxy, one hop", "10.0.0.2:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client-written left part is not believed", "10.0.0.2:4000", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1"},
		{"chain of trusted proxies", "192.0.2.7:4000", []string{"198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"several header lines read as one list", "10.0.0.2:4000", []string{"6.6.6.6", "198.51.100.1, 10.3.3.3"}, "198.51.100.1"},
		{"every hop a proxy: leftmost", "10.0.0.2:4000", []string{"10.5.5.5, 10.3.3.3"}, "10.5.5.5"},
		{"garbage hop: last trusted hop", "10.0.0.2:4000", []string{"198.51.100.1, not-an-ip"}, "10.0.0.2"},
		{"hop with a port", "10.0.0.2:4000", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"IPv6 hop with a port", "10.0.0.2:4000", []string{"[2a00::9]:443"}, "2a00::9"},
		{"empty entries skipped", "10.0.0.2:4000", []string{"198.51.100.1, , 10.3.3.3,"}, "198.51.100.1"},
		{"untrusted IPv4-mapped peer unmapped", "[::ffff:203.0.113.5]:4000", nil, "203.0.113.5"},
		{"trusted proxy without header", "10.0.0.2:4000", nil, "10.0.0.2"},
		{"IPv6 proxy", "[2001:db8::1]:4000", []string{"2001:db8:ffff::1, 2a00::9"}, "2a00::9"},
		{"IPv4-mapped peer", "[::ffff:10.0.0.2]:4000", []string{"198.51.100.1"}, "198.51.100.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			trusted := proxies
			if tt.name == "no proxies configured: peer, header ignored" {
				trusted = nil
			}
			if got := clientIP(r, trusted); got != tt.want {
				t.Errorf("clientIP = %s, want %s", got, tt.want)
			}
		})
	}
	if p, err := config.ParsePrefixes("::ffff:10.0.0.0/104"); err != nil || p[0].String() != "10.0.0.0/8" {
		t.Errorf("IPv4-mapped prefix: %v %v", p, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0", "0.0.0.0/0", "::/0"} {
		if _, err := config.ParsePrefixes(bad); err == nil {
			t.Errorf("ParsePrefixes(%q) accepted", bad)
		}
	}
}
