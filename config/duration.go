package config

import (
	"math"
	"strings"
	"time"

	"github.com/repermit/repermit"
)

// ParseDuration parses a Go duration ("90m", "12h", "1h30m", "3s") that may
// start with a number of days ("30d", "1.5d", "1d12h"). A day is 24 hours:
// campaign deadlines are counted in elapsed time, not calendar days. The
// error is an EINVALID *repermit.Error worded for a campaign file's author.
func ParseDuration(s string) (time.Duration, error) {
	bad := func() (time.Duration, error) {
		return 0, repermit.Errorf(repermit.EINVALID, "%q is not a duration (use e.g. 30d, 12h, 90m)", s)
	}
	t := strings.TrimSpace(s)
	sign := time.Duration(1)
	switch {
	case strings.HasPrefix(t, "-"):
		sign, t = -1, t[1:]
	case strings.HasPrefix(t, "+"):
		t = t[1:]
	}
	if t == "" || strings.ContainsAny(t, "+-") {
		return bad()
	}
	var d time.Duration
	if i := strings.IndexByte(t, 'd'); i >= 0 {
		if !isDecimal(t[:i]) {
			return bad()
		}
		h, err := time.ParseDuration(t[:i] + "h")
		if err != nil || h > math.MaxInt64/24 {
			return bad()
		}
		d, t = 24*h, t[i+1:]
		if t == "" {
			return sign * d, nil
		}
	}
	rest, err := time.ParseDuration(t)
	if err != nil || rest > math.MaxInt64-d {
		return bad()
	}
	return sign * (d + rest), nil
}

// isDecimal reports whether s is digits with at most one decimal point.
func isDecimal(s string) bool {
	digits, dots := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}
