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

func TestClientAddrIsTheRightMostUntrustedHop(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	for _, tc := range []struct {
		name    string
		remote  string
		trusted []netip.Prefix
		xff     []string
		fwd     []string
		want    string
	}{
		{"no proxies trusted", "10.0.0.1:5555", nil, []string{"203.0.113.9"}, nil, "10.0.0.1"},
		{"untrusted peer's header is ignored", "198.51.100.7:1", trusted, []string{"203.0.113.9"}, nil, "198.51.100.7"},
		{"one proxy", "10.0.0.1:5555", trusted, []string{"203.0.113.9"}, nil, "203.0.113.9"},
		{"client spoofs a left entry", "10.0.0.1:5555", trusted, []string{"1.2.3.4, 203.0.113.9"}, nil, "203.0.113.9"},
		{"two proxies", "10.0.0.1:5555", trusted, []string{"1.2.3.4, 203.0.113.9, 10.0.0.2"}, nil, "203.0.113.9"},
		{"headers on two lines", "10.0.0.1:5555", trusted, []string{"1.2.3.4", "203.0.113.9, 10.0.0.2"}, nil, "203.0.113.9"},
		{"only proxies: the left-most", "10.0.0.1:5555", trusted, []string{"10.0.0.3, 10.0.0.2"}, nil, "10.0.0.3"},
		{"garbage: the last hop we know", "10.0.0.1:5555", trusted, []string{"garbage"}, nil, "10.0.0.1"},
		{"garbage further left", "10.0.0.1:5555", trusted, []string{"garbage, 10.0.0.2"}, nil, "10.0.0.2"},
		{"IPv6 client", "10.0.0.1:5555", trusted, []string{"2001:db8:1::5"}, nil, "2001:db8:1::5"},
		{"Forwarded", "10.0.0.1:5555", trusted, nil, []string{`for=1.2.3.4, for=203.0.113.9;proto=https`}, "203.0.113.9"},
		{"Forwarded IPv6 with port", "10.0.0.1:5555", trusted, nil, []string{`for="[2001:db8:1::5]:4711";by=10.0.0.1`}, "2001:db8:1::5"},
		{"Forwarded quoted v4 with port", "10.0.0.1:5555", trusted, nil, []string{`For="203.0.113.9:80", for=10.0.0.2`}, "203.0.113.9"},
		{"Forwarded unknown", "10.0.0.1:5555", trusted, nil, []string{`for=unknown`}, "10.0.0.1"},
		{"X-Forwarded-For wins over Forwarded", "10.0.0.1:5555", trusted, []string{"203.0.113.9"}, []string{"for=1.2.3.4"}, "203.0.113.9"},
		{"IPv6 proxy", "[2001:db8:ffff::1]:443", trusted, []string{"203.0.113.9"}, nil, "203.0.113.9"},
	} {
		req := httptest.NewRequest("POST", "/u/x", nil)
		req.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			req.Header.Add("X-Forwarded-For", v)
		}
		for _, v := range tc.fwd {
			req.Header.Add("Forwarded", v)
		}
		if got := clientAddr(req, tc.trusted).String(); got != tc.want {
			t.Errorf("%s: client %s, want %s", tc.name, got, tc.want)
		}
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
