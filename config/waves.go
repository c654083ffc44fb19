package config

import (
	"math/big"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/repermit/repermit"
)

var wavesKeys = []string{"pilot", "grow", "observe", "stop"}

var stopKeys = []string{"bounces", "complaints", "deferrals"}

// waves parses the waves: mapping (pilot, grow, observe, stop).
func (l *loader) waves(n *yaml.Node) *repermit.Waves {
	if n.Kind != yaml.MappingNode {
		l.addf(n.Line, "waves: must be a mapping (pilot: 100, grow: 2.5, observe: 24h, stop: {…}), not %s", kindName(n))
		return nil
	}
	w := &repermit.Waves{}
	seen := l.mapping(n, "waves.", wavesKeys)
	for _, k := range wavesKeys {
		if _, ok := seen[k]; !ok && k != "stop" {
			l.addf(n.Line, "waves: missing required key %q", k)
		}
	}
	if v, ok := seen["pilot"]; ok {
		if c, ok := l.count("waves.pilot", v); ok {
			if c == 0 {
				l.addf(v.Line, "waves.pilot: must be at least 1")
			}
			w.Pilot = int64(c)
		}
	}
	if v, ok := seen["grow"]; ok {
		if s, ok := l.str("waves.grow", v); ok {
			s = strings.TrimSpace(s)
			if i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64); err == nil && !strings.Contains(s, ".") {
				// A whole number above 10 is a fixed size; up to 10 a factor.
				switch {
				case i < 1:
					l.addf(v.Line, "waves.grow: %q must be a factor above 1 (2.5) or a wave size (250)", s)
				case i == 1:
					l.addf(v.Line, "waves.grow: 1 would never grow; write a factor above 1 (2.5) or a wave size (250)")
				case i <= 10:
					w.GrowMilli = i * 1000
				default:
					w.Fixed = i
				}
			} else {
				r, ok := new(big.Rat).SetString(s)
				milli := new(big.Rat).Mul(r, big.NewRat(1000, 1))
				switch {
				case !ok:
					l.addf(v.Line, "waves.grow: %q is neither a factor (2.5) nor a wave size (250)", s)
				case !milli.IsInt():
					l.addf(v.Line, "waves.grow: %q has more than 3 decimals", s)
				case r.Cmp(big.NewRat(1, 1)) <= 0 || r.Cmp(big.NewRat(10, 1)) > 0:
					l.addf(v.Line, "waves.grow: factor %q must be above 1 and at most 10", s)
				default:
					w.GrowMilli = milli.Num().Int64()
				}
			}
		}
	}
	if v, ok := seen["observe"]; ok {
		if s, ok := l.str("waves.observe", v); ok {
			d, err := ParseDuration(s)
			switch {
			case err != nil:
				l.addf(v.Line, "waves.observe: %s", repermit.ErrorMessage(err))
			case d <= 0:
				l.addf(v.Line, "waves.observe: %q must be a positive duration", s)
			}
			w.Observe = d
		}
	}
	if v, ok := seen["stop"]; ok {
		w.Stop = l.stop(v)
	}
	l.wavesLine = n.Line
	return w
}

func (l *loader) stop(n *yaml.Node) repermit.Stop {
	var s repermit.Stop
	if n.Kind != yaml.MappingNode {
		l.addf(n.Line, "waves.stop: must be a mapping like {bounces: 2%%, complaints: 1, deferrals: 20%%}, not %s", kindName(n))
		return s
	}
	seen := l.mapping(n, "waves.stop.", stopKeys)
	for k, v := range seen {
		t := l.threshold("waves.stop."+k, v)
		switch k {
		case "bounces":
			s.Bounces = t
		case "complaints":
			s.Complaints = t
		case "deferrals":
			s.Deferrals = t
		}
	}
	return s
}

// threshold parses "2%" (a rate, up to two decimals) or "3" (a count).
func (l *loader) threshold(key string, n *yaml.Node) repermit.Threshold {
	v, ok := l.str(key, n)
	if !ok {
		return repermit.Threshold{}
	}
	v = strings.TrimSpace(v)
	if p, ok := strings.CutSuffix(v, "%"); ok {
		r, ok := new(big.Rat).SetString(strings.TrimSpace(p))
		bp := new(big.Rat)
		if ok {
			bp.Mul(r, big.NewRat(100, 1))
		}
		switch {
		case !ok || strings.ContainsAny(p, "eE/"):
			l.addf(n.Line, "%s: %q is not a percentage like 2%%", key, v)
		case !bp.IsInt():
			l.addf(n.Line, "%s: %q has more than 2 decimals", key, v)
		case r.Sign() <= 0 || r.Cmp(big.NewRat(100, 1)) > 0:
			l.addf(n.Line, "%s: %q must be above 0%% and at most 100%%", key, v)
		default:
			return repermit.Threshold{BasisPoints: bp.Num().Int64()}
		}
		return repermit.Threshold{}
	}
	c, err := strconv.ParseInt(v, 10, 64)
	if err != nil || c < 1 {
		l.addf(n.Line, "%s: %q is neither a count of at least 1 nor a rate like 2%%", key, v)
		return repermit.Threshold{}
	}
	return repermit.Threshold{Count: c}
}
