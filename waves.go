package repermit

import (
	"fmt"
	"strconv"
	"time"
)

// Waves makes a campaign send its list in waves: a pilot, then growing
// waves, each after an observation time, stopping when the bounces,
// complaints or deferrals of the last wave or of the whole campaign cross
// a threshold. Recipient index order is sending order, so wave k is a
// range of indexes (WaveOf, Bounds).
type Waves struct {
	Pilot int64 `json:"pilot"`
	// GrowMilli is the growth factor in thousandths (2.5 -> 2500): each
	// wave is the previous one times the factor, rounded down. Fixed, when
	// set, is the size of every wave after the pilot instead.
	GrowMilli int64 `json:"grow_milli,omitempty"`
	Fixed     int64 `json:"fixed,omitempty"`
	// Observe is the time between the last mail of a wave being queued and
	// the first of the next.
	Observe time.Duration `json:"observe"`
	Stop    Stop          `json:"stop"`
}

// Stop holds the thresholds of Waves; a zero Threshold never stops.
type Stop struct {
	Bounces    Threshold `json:"bounces"`
	Complaints Threshold `json:"complaints"`
	Deferrals  Threshold `json:"deferrals"`
}

// Threshold is a count (Count > 0) or a rate in basis points of the
// recipients of the range judged (BasisPoints > 0: 2% is 200). A figure
// that reaches it crosses it.
type Threshold struct {
	Count       int64 `json:"count,omitempty"`
	BasisPoints int64 `json:"bp,omitempty"`
}

// Set reports whether t can stop a campaign.
func (t Threshold) Set() bool { return t.Count > 0 || t.BasisPoints > 0 }

// Crossed reports whether n reports among recipients reach t.
func (t Threshold) Crossed(n, recipients int64) bool {
	switch {
	case t.Count > 0:
		return n >= t.Count
	case t.BasisPoints > 0:
		return recipients > 0 && n*10000 >= t.BasisPoints*recipients
	}
	return false
}

// String writes t as a campaign file does: "1", "2%", "0.5%".
func (t Threshold) String() string {
	if t.Count > 0 {
		return strconv.FormatInt(t.Count, 10)
	}
	return FormatBasisPoints(t.BasisPoints)
}

// FormatBasisPoints writes bp as a percentage with no trailing zeros
// ("2%", "0.25%").
func FormatBasisPoints(bp int64) string {
	s := strconv.FormatFloat(float64(bp)/100, 'f', 2, 64)
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s + "%"
}

// Size returns the number of recipients of wave k (1 is the pilot).
func (w *Waves) Size(k int) int64 {
	n := w.Pilot
	for i := 2; i <= k; i++ {
		if w.Fixed > 0 {
			return w.Fixed
		}
		n = max(n+1, n*w.GrowMilli/1000)
	}
	return n
}

// Bounds returns the index range [lo, hi) of wave k within imported
// recipients; hi == lo past the last wave.
func (w *Waves) Bounds(k int, imported int64) (lo, hi int64) {
	for i := 1; i < k && lo < imported; i++ {
		lo += w.Size(i)
	}
	lo = min(lo, imported)
	return lo, min(lo+w.Size(k), imported)
}

// WaveOf returns the wave recipient idx belongs to (1 is the pilot). The
// store's feedback script computes the same in Lua.
func (w *Waves) WaveOf(idx int64) int {
	k, end := 1, w.Pilot
	for idx >= end {
		k++
		end += w.Size(k)
	}
	return k
}

// Count returns the number of waves that imported recipients make.
func (w *Waves) Count(imported int64) int {
	if imported <= 0 {
		return 0
	}
	return w.WaveOf(imported - 1)
}

// WaveFigures are a wave's (or several waves') reports: bounces,
// complaints and deferrals from every channel, over Recipients.
type WaveFigures struct {
	Recipients int64 `json:"recipients"`
	Bounces    int64 `json:"bounces"`
	Complaints int64 `json:"complaints"`
	Deferrals  int64 `json:"deferrals"`
}

// Add returns the sum of f and o.
func (f WaveFigures) Add(o WaveFigures) WaveFigures {
	return WaveFigures{f.Recipients + o.Recipients, f.Bounces + o.Bounces, f.Complaints + o.Complaints, f.Deferrals + o.Deferrals}
}

// Crossing is one threshold a range of waves crossed, with its figures.
type Crossing struct {
	Scope      string    `json:"scope"` // "wave 2" or "campaign (waves 1-2)"
	Kind       string    `json:"kind"`  // bounces, complaints, deferrals
	Count      int64     `json:"count"`
	Recipients int64     `json:"recipients"`
	Threshold  Threshold `json:"threshold"`
}

func (c Crossing) String() string {
	return fmt.Sprintf("%s: %d %s of %d recipients (%s) reached stop.%s %s",
		c.Scope, c.Count, c.Kind, c.Recipients, FormatBasisPoints(rateBP(c.Count, c.Recipients)), c.Kind, c.Threshold)
}

// rateBP is n of d in basis points, rounded to the nearest.
func rateBP(n, d int64) int64 {
	if d <= 0 {
		return 0
	}
	return (n*10000 + d/2) / d
}

// Judge returns the thresholds f crosses, scope naming the range.
func (s Stop) Judge(scope string, f WaveFigures) []Crossing {
	var out []Crossing
	for _, t := range []struct {
		kind string
		n    int64
		th   Threshold
	}{{"bounces", f.Bounces, s.Bounces}, {"complaints", f.Complaints, s.Complaints}, {"deferrals", f.Deferrals, s.Deferrals}} {
		if t.th.Crossed(t.n, f.Recipients) {
			out = append(out, Crossing{Scope: scope, Kind: t.kind, Count: t.n, Recipients: f.Recipients, Threshold: t.th})
		}
	}
	return out
}
