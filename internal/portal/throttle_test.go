package portal

import (
	"testing"
	"time"
)

func TestLoginThrottleWindows(t *testing.T) {
	th := newLoginThrottle(2, time.Minute)
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	th.fail("10.0.0.1", t0)
	th.fail("10.0.0.1", t0.Add(10*time.Second))
	if ok, retry := th.allow("10.0.0.1", t0.Add(20*time.Second)); ok || retry != 40*time.Second {
		t.Fatalf("over the limit: allowed %v, retry %v", ok, retry)
	}
	if ok, _ := th.allow("10.0.0.2", t0.Add(20*time.Second)); !ok {
		t.Fatal("another address refused")
	}
	if ok, _ := th.allow("10.0.0.1", t0.Add(time.Minute)); !ok {
		t.Fatal("refused after the window ended")
	}
	// IPv6 addresses count per /64.
	th.fail("2001:db8::1", t0)
	th.fail("2001:db8::2", t0)
	if ok, _ := th.allow("2001:db8::ffff", t0); ok {
		t.Fatal("a /64 was not counted as one client")
	}
	if ok, _ := th.allow("2001:db8:0:1::1", t0); !ok {
		t.Fatal("the next /64 was refused")
	}
	// Unknown addresses and a nil (off) throttle never refuse.
	if ok, _ := th.allow("", t0); !ok {
		t.Fatal("empty address refused")
	}
	var off *loginThrottle
	off.fail("10.0.0.1", t0)
	if ok, _ := off.allow("10.0.0.1", t0); !ok {
		t.Fatal("off throttle refused")
	}
	if newLoginThrottle(0, time.Minute) != nil {
		t.Fatal("limit 0 is not off")
	}
}
