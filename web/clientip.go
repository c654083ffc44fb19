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

// clientAddr returns the address a request came from. The peer is the
// client unless it is a trusted proxy; then the hops its forwarding header
// lists are walked from the right, and the first one that is not a trusted
// proxy is the client: entries further left are that client's own word.
// X-Forwarded-For is read when present, Forwarded (RFC 7239) otherwise,
// because the common proxies append to X-Forwarded-For and pass a
// client's Forwarded header on untouched. A hop that does not parse
// (garbage, "unknown", an obfuscated name) ends the walk at the last hop
// known. It returns the zero Addr when the peer does not parse.
func clientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	a = a.Unmap()
	if !isTrusted(a, trusted) {
		return a
	}
	var hops []string
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		hops = strings.Split(strings.Join(xff, ","), ",")
	} else if fwd := r.Header.Values("Forwarded"); len(fwd) > 0 {
		hops = forwardedFor(strings.Join(fwd, ","))
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return a
		}
		a = hop.Unmap()
		if !isTrusted(a, trusted) {
			return a
		}
	}
	return a
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor returns the for= node of each element of a Forwarded
// header, without quotes, brackets and port; an element without for= gives
// "" (which does not parse as an address).
func forwardedFor(h string) []string {
	var out []string
	for _, elem := range strings.Split(h, ",") {
		node := ""
		for _, pair := range strings.Split(elem, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || !strings.EqualFold(k, "for") {
				continue
			}
			v = strings.Trim(v, `"`)
			if strings.HasPrefix(v, "[") {
				if end := strings.IndexByte(v, ']'); end > 0 {
					v = v[1:end]
				}
			} else if h, _, err := net.SplitHostPort(v); err == nil {
				v = h
			}
			node = v
		}
		out = append(out, node)
	}
	return out
}

// ParseTrustedProxies reads REPERMIT_TRUSTED_PROXIES: CIDRs or single
// addresses, separated by commas or spaces.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR", f)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// clientAddr is the client's address as this server's settings see it.
func (s *Server) clientAddr(r *http.Request) netip.Addr {
	return clientAddr(r, s.cfg.TrustedProxies)
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
