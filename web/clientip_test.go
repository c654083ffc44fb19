package web

import (
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestRecordedIPKeepsOnlyWhatTheModeAllows(t *testing.T) {
	for _, tc := range []struct {
		addr string
		mode IPMode
		want string
	}{
		{"192.0.2.77", IPTruncate, "192.0.2.0"},
		{"192.0.2.77", IPFull, "192.0.2.77"},
		{"192.0.2.77", IPNone, ""},
		{"2001:db8:1234:5678::1", IPTruncate, "2001:db8:1234::"},
		{"2001:db8:1234:5678::1", IPFull, "2001:db8:1234:5678::1"},
		{"::ffff:192.0.2.77", IPTruncate, "192.0.2.0"},
	} {
		a := netip.MustParseAddr(tc.addr).Unmap()
		if got := recordedIP(a, tc.mode); got != tc.want {
			t.Errorf("recordedIP(%s, %s) = %q, want %q", tc.addr, tc.mode, got, tc.want)
		}
	}
	if got := recordedIP(netip.Addr{}, IPFull); got != "" {
		t.Errorf("invalid address recorded as %q", got)
	}
}

func TestClientAddrTrustsOnlyTheLastProxyHop(t *testing.T) {
	req := httptest.NewRequest("POST", "/u/x", nil)
	req.RemoteAddr = "10.0.0.1:5555"
	req.Header.Add("X-Forwarded-For", "203.0.113.9, 198.51.100.4")
	if got := clientAddr(req, false).String(); got != "10.0.0.1" {
		t.Errorf("without TrustProxy: %s", got)
	}
	if got := clientAddr(req, true).String(); got != "198.51.100.4" {
		t.Errorf("with TrustProxy: %s, want the last hop", got)
	}
	req.Header.Set("X-Forwarded-For", "garbage")
	if got := clientAddr(req, true).String(); got != "10.0.0.1" {
		t.Errorf("unparsable header: %s, want RemoteAddr", got)
	}
}

func TestParseIPMode(t *testing.T) {
	for in, want := range map[string]IPMode{"": IPTruncate, "FULL": IPFull, " none ": IPNone, "truncate": IPTruncate} {
		if got, err := ParseIPMode(in); err != nil || got != want {
			t.Errorf("ParseIPMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseIPMode("some"); err == nil {
		t.Error("ParseIPMode accepted some")
	}
}

func TestRateLimiterMemoryIsBounded(t *testing.T) {
	l := newLimiter(1, 2, 100)
	now := time.Unix(0, 0)
	for i := range 10000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if !l.allow(a, now) {
			t.Fatalf("fresh client %s refused", a)
		}
	}
	if n := l.size(); n > 100 {
		t.Errorf("limiter tracks %d clients, bound 100", n)
	}
	// Idle clients are forgotten first: a full table of idle clients and
	// one busy one make room for a newcomer without freeing the busy one.
	l = newLimiter(1, 2, 100)
	for i := range 99 {
		l.allow(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), now)
	}
	later := now.Add(time.Hour)
	busy := netip.MustParseAddr("192.0.2.1")
	l.allow(busy, later)
	l.allow(busy, later)
	l.allow(netip.MustParseAddr("192.0.2.2"), later)
	if n := l.size(); n != 2 {
		t.Errorf("after eviction %d clients, want the 2 recent ones", n)
	}
	if l.allow(busy, later) {
		t.Error("a busy client's exhausted bucket was forgotten")
	}
}

func TestLimitKeyGroupsAnIPv6Subnet(t *testing.T) {
	a := limitKey(netip.MustParseAddr("2001:db8:1:2:aaaa::1"))
	b := limitKey(netip.MustParseAddr("2001:db8:1:2:bbbb::2"))
	c := limitKey(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Errorf("keys %s %s %s: want one per /64", a, b, c)
	}
}
