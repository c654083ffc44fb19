package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// waveLimit is how far the feeder of a campaign sent in waves may go from
// cursor cur: to the end of the wave under way; past it, once the wave
// was observed for waves.observe (or a resume let it go on), to the end
// of the next. Once a wave is queued, every tick judges the stop
// thresholds over it and over the campaign (its waves from wv_base on);
// when one is crossed it pauses the campaign with the figures and reports
// stopped. A resume lets the waves judged go on: the next wave is sent
// whole and judged in its turn, the campaign-wide figures with it.
func (s *Server) waveLimit(ctx context.Context, c *repermit.Campaign, cur, imported int64, now time.Time) (limit int64, stopped bool, err error) {
	w := c.Waves
	ws, err := s.store.Waves(ctx, c.ID)
	if err != nil {
		return 0, false, err
	}
	k := 0 // the wave under way: the one of the last recipient queued
	if cur > 0 {
		k = w.WaveOf(cur - 1)
	}
	if k == 0 {
		_, hi := w.Bounds(1, imported)
		return hi, false, nil
	}
	_, hi := w.Bounds(k, imported)
	if cur < hi {
		return hi, false, nil
	}
	if k > ws.Ack {
		if st := judgeWaves(w, ws, k, imported); st != nil {
			st.At = now
			paused, err := s.store.StopWaves(ctx, c.ID, *st)
			if err != nil {
				return 0, false, err
			}
			if paused {
				s.log.Error("CAMPAIGN PAUSED by its waves: check the list, then run `repermit resume "+c.ID+"` (or resume --reset-thresholds after cleaning it)",
					"campaign", c.ID, "reason", st.Reason())
			}
			return 0, true, nil
		}
	}
	fed, ok := ws.Fed[k]
	if !ok {
		if err := s.store.MarkWaveFed(ctx, c.ID, k, now); err != nil {
			return 0, false, err
		}
		fed = now
	}
	if k > ws.Ack && now.Before(fed.Add(w.Observe)) {
		return cur, false, nil // observing wave k
	}
	_, next := w.Bounds(k+1, imported)
	return next, false, nil
}

// judgeWaves returns the stop of a campaign whose wave k (the last) or
// waves ws.Base..k (the campaign) cross a threshold, or nil.
func judgeWaves(w *repermit.Waves, ws redisstore.WaveState, k int, imported int64) *redisstore.WaveStop {
	figures := func(i int) repermit.WaveFigures {
		f := ws.Figures[i]
		lo, hi := w.Bounds(i, imported)
		f.Recipients = hi - lo
		return f
	}
	crossed := w.Stop.Judge(fmt.Sprintf("wave %d", k), figures(k))
	base := min(ws.Base, k)
	var all repermit.WaveFigures
	for i := base; i <= k; i++ {
		all = all.Add(figures(i))
	}
	crossed = append(crossed, w.Stop.Judge(fmt.Sprintf("campaign (waves %d-%d)", base, k), all)...)
	if len(crossed) == 0 {
		return nil
	}
	return &redisstore.WaveStop{Wave: k, NextWave: k + 1, Crossed: crossed}
}

// remindLimit is the index below which reminder n of a campaign sent in
// waves is due: a wave's recipients get it the reminder's offset after
// the wave's last mail was queued, as the pilot's would after the start.
func (s *Server) remindLimit(ctx context.Context, c *repermit.Campaign, n int, imported int64, now time.Time) (int64, error) {
	ws, err := s.store.Waves(ctx, c.ID)
	if err != nil {
		return 0, err
	}
	if n < 1 || n > len(c.Reminders) {
		return imported, nil
	}
	off := c.Reminders[n-1]
	limit := int64(0)
	for k := 1; k <= c.Waves.Count(imported); k++ {
		fed, ok := ws.Fed[k]
		if !ok || now.Before(fed.Add(off)) {
			break
		}
		_, limit = c.Waves.Bounds(k, imported)
	}
	return limit, nil
}

// markWaveQueued records the time a wave's last recipient was queued
// when the feeder's cursor moved to the end of one.
func (s *Server) markWaveQueued(ctx context.Context, c *repermit.Campaign, to, imported int64, now time.Time) error {
	k := c.Waves.WaveOf(to - 1)
	if _, hi := c.Waves.Bounds(k, imported); hi != to {
		return nil
	}
	return s.store.MarkWaveFed(ctx, c.ID, k, now)
}
