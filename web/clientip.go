package web

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// IPMode says how much of a client's address goes into a consent record.
type IPMode string

const (
	// IPTruncate keeps the network only: IPv4 /24, IPv6 /48. Enough to show
	// where an answer came from, too little to single out a household.
	// The default.
	IPTruncate IPMode = "truncate"
	// IPFull keeps the whole address.
	IPFull IPMode = "full"
	// IPNone records no address.
	IPNone IPMode = "none"
)

// ParseIPMode reads a flag or environment value.
func ParseIPMode(s string) (IPMode, error) {
	switch m := IPMode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return IPTruncate, nil
	case IPTruncate, IPFull, IPNone:
		return m, nil
	}
	return "", fmt.Errorf("ip mode %q: want full, truncate or none", s)
}

// clientAddr returns the address the request came from. Behind a trusted
// reverse proxy it is the last X-Forwarded-For entry, the one our proxy
// appended; earlier entries are the client's word and could be anything.
// It returns the zero Addr when nothing parses.
func clientAddr(r *http.Request, trustProxy bool) netip.Addr {
	if trustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			last := xff[len(xff)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if a, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
				return a.Unmap()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// clientAddr is the client's address as this server's settings see it.
func (s *Server) clientAddr(r *http.Request) netip.Addr {
	return clientAddr(r, s.cfg.TrustProxy)
}

// recordedIP is the form of a client address that goes into the ledger.
func recordedIP(a netip.Addr, mode IPMode) string {
	if !a.IsValid() || mode == IPNone {
		return ""
	}
	if mode == IPFull {
		return a.WithZone("").String()
	}
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.WithZone("").Prefix(bits)
	if err != nil {
		return ""
	}
	return p.Addr().String()
}

// limitKey groups clients for rate limiting: one IPv4 address, or one IPv6
// /64, which is what a single subscriber line usually gets.
func limitKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		if p, err := a.WithZone("").Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}
