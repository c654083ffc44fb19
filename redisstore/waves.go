package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/repermit/repermit"
)

// Meta hash fields of a campaign sent in waves (repermit.Waves):
//
//	wv:<k>:<kind>  reports of kind (bounced, soft, deferred, complaint) about
//	               recipients of wave k, counted by feedbackScript
//	wv_fed:<k>     unix ms at which wave k's last recipient was queued
//	wv_ack         waves up to this one were let go on by a resume
//	wv_base        first wave the campaign-wide figures count (a resume
//	               with reset)
//	wv_stop        JSON of the pause: the thresholds crossed and figures
const (
	fWavePfx  = "wv:"
	fWaveFed  = "wv_fed:"
	fWaveAck  = "wv_ack"
	fWaveBase = "wv_base"
	fWaveStop = "wv_stop"
)

// waveOfLua sets k to the wave of recipient index idx from the campaign
// config JSON cfg, as repermit.Waves.WaveOf does; k stays nil for a
// campaign without waves.
const waveOfLua = `
local k = nil
if cfg then
  local ok, c = pcall(cjson.decode, cfg)
  if ok and type(c) == 'table' and type(c.waves) == 'table' and tonumber(c.waves.pilot or 0) > 0 then
    local w = c.waves
    local size = tonumber(w.pilot)
    local fixed = tonumber(w.fixed or 0)
    local grow = tonumber(w.grow_milli or 0)
    local e = size
    k = 1
    while idx >= e do
      k = k + 1
      if fixed > 0 then size = fixed else size = math.max(size + 1, math.floor(size * grow / 1000)) end
      e = e + size
    end
  end
end
`

// WaveState is what the feeder and status know of a campaign's waves.
type WaveState struct {
	// Figures holds the reports per wave, 1-based (Figures[0] unused);
	// Recipients is left for the caller, who knows the wave sizes.
	Figures map[int]repermit.WaveFigures
	// Fed maps a wave to when its last recipient was queued.
	Fed  map[int]time.Time
	Ack  int
	Base int
	Stop *WaveStop
}

// WaveStop is why the waves paused a campaign.
type WaveStop struct {
	At       time.Time           `json:"at"`
	Wave     int                 `json:"wave"`
	Crossed  []repermit.Crossing `json:"crossed"`
	NextWave int                 `json:"next_wave"`
}

// Reason is the pause reason in one line, every figure in it.
func (w *WaveStop) Reason() string {
	parts := make([]string, len(w.Crossed))
	for i, c := range w.Crossed {
		parts[i] = c.String()
	}
	return fmt.Sprintf("waves stopped before wave %d: %s", w.NextWave, strings.Join(parts, "; "))
}

// Waves reads a campaign's wave state in one round trip.
func (s *Store) Waves(ctx context.Context, id string) (WaveState, error) {
	m, err := s.rdb.HGetAll(ctx, s.metaKey(id)).Result()
	if err != nil {
		return WaveState{}, unavailable("waves "+id, err)
	}
	if st := m[fStatus]; st == "" || st == string(repermit.StatusImporting) {
		return WaveState{}, repermit.Errorf(repermit.ENOTFOUND, "no campaign %q", id)
	}
	return waveState(m), nil
}

func waveState(m map[string]string) WaveState {
	w := WaveState{Figures: map[int]repermit.WaveFigures{}, Fed: map[int]time.Time{}}
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	for f, v := range m {
		if rest, ok := strings.CutPrefix(f, fWaveFed); ok {
			k, _ := strconv.Atoi(rest)
			w.Fed[k] = time.UnixMilli(n(v)).UTC()
			continue
		}
		rest, ok := strings.CutPrefix(f, fWavePfx)
		if !ok {
			continue
		}
		ks, kind, ok := strings.Cut(rest, ":")
		k, err := strconv.Atoi(ks)
		if !ok || err != nil {
			continue
		}
		fg := w.Figures[k]
		switch kind {
		case FeedbackHard:
			fg.Bounces += n(v)
		case FeedbackComplaint:
			fg.Complaints += n(v)
		case FeedbackSoft, FeedbackDeferred:
			fg.Deferrals += n(v)
		}
		w.Figures[k] = fg
	}
	w.Ack = int(n(m[fWaveAck]))
	w.Base = max(1, int(n(m[fWaveBase])))
	if v := m[fWaveStop]; v != "" {
		var st WaveStop
		if json.Unmarshal([]byte(v), &st) == nil {
			w.Stop = &st
		}
	}
	return w
}

// MarkWaveFed records when wave k's last recipient was queued; the first
// record stays.
func (s *Store) MarkWaveFed(ctx context.Context, id string, k int, at time.Time) error {
	if err := s.rdb.HSetNX(ctx, s.metaKey(id), fWaveFed+strconv.Itoa(k), at.UnixMilli()).Err(); err != nil {
		return unavailable("waves "+id, err)
	}
	return nil
}

// stopWavesScript: KEYS[1] meta, KEYS[2] webhook event outbox; ARGV[1]
// stop JSON, ARGV[2] its time (unix ms). Pauses a running campaign,
// records why and writes the webhook event of the pause; returns 1 when
// it did, 0 when the campaign was not running.
var stopWavesScript = luaScript(emitLua + `
if redis.call('HGET', KEYS[1], F_STATUS) ~= STATUS_RUNNING then return 0 end
redis.call('HSET', KEYS[1], F_STATUS, STATUS_PAUSED, F_WAVE_STOP, ARGV[1])
emit(KEYS[1], KEYS[2], {'t', 'paused', 'at', ARGV[2], 'stop', ARGV[1]})
return 1
`)

// StopWaves pauses a running campaign because its waves crossed a
// threshold; it reports whether this call paused it.
func (s *Store) StopWaves(ctx context.Context, id string, st WaveStop) (bool, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return false, fmt.Errorf("stop waves of %s: %w", id, err)
	}
	n, err := stopWavesScript.Run(ctx, s.rdb, []string{s.metaKey(id), s.eventsKey(id)}, b, st.At.UnixMilli()).Int()
	if err != nil {
		return false, unavailable("stop waves of "+id, err)
	}
	if n == 1 {
		if err := s.copyStatusOf(ctx, id); err != nil {
			return false, err
		}
	}
	return n == 1, nil
}

// resumeWavesScript: KEYS[1] meta; ARGV[1] reset ("1" or ""). A paused
// campaign runs again; when the waves had stopped it, the waves up to the
// one judged are let go on (wv_ack), and with reset the campaign-wide
// figures start at the next wave. Returns "ok", "missing" or "is:<status>".
var resumeWavesScript = luaScript(`
local cur = redis.call('HGET', KEYS[1], F_STATUS)
if not cur or cur == STATUS_IMPORTING then return 'missing' end
if cur ~= STATUS_PAUSED then return 'is:' .. cur end
local st = redis.call('HGET', KEYS[1], F_WAVE_STOP)
if st then
  local ok, s = pcall(cjson.decode, st)
  if ok then
    redis.call('HSET', KEYS[1], F_WAVE_ACK, s.wave)
    if ARGV[1] == '1' then redis.call('HSET', KEYS[1], F_WAVE_BASE, s.next_wave) end
  end
  redis.call('HDEL', KEYS[1], F_WAVE_STOP)
end
redis.call('HSET', KEYS[1], F_STATUS, STATUS_RUNNING)
return 'ok'
`)

// Resume makes a paused campaign run again. If its waves had stopped it,
// the feeder goes on with the next wave at once, and with resetThresholds
// the campaign-wide figures count from that wave on (the operator cleaned
// the list). ECONFLICT names the status of a campaign that is not paused.
func (s *Store) Resume(ctx context.Context, id string, resetThresholds bool) error {
	reset := ""
	if resetThresholds {
		reset = "1"
	}
	res, err := resumeWavesScript.Run(ctx, s.rdb, []string{s.metaKey(id)}, reset).Text()
	if err != nil {
		return unavailable("resume "+id, err)
	}
	switch {
	case res == "ok", res == "is:running":
		// is:running copies again too, repairing a copy that failed.
		return s.copyStatusOf(ctx, id)
	case res == "missing":
		return repermit.Errorf(repermit.ENOTFOUND, "no campaign %q", id)
	default:
		return repermit.Errorf(repermit.ECONFLICT, "campaign %s is %s; cannot make it running", id, strings.TrimPrefix(res, "is:"))
	}
}

// WaveRow is one wave as status shows it.
type WaveRow struct {
	Wave    int                  `json:"wave"`
	From    int64                `json:"from"`  // first recipient index
	To      int64                `json:"to"`    // one past the last
	State   string               `json:"state"` // queued, sending, waiting
	Figures repermit.WaveFigures `json:"figures"`
	FedAt   *time.Time           `json:"queued_at,omitempty"`
}

// WavesReport is a campaign's waves, their figures, and when the next
// wave goes (nil while stopped, or when no wave is left).
type WavesReport struct {
	Waves    []WaveRow  `json:"waves"`
	Next     int        `json:"next_wave,omitempty"`
	NextAt   *time.Time `json:"next_wave_at,omitempty"`
	Base     int        `json:"campaign_figures_from_wave"`
	Stop     *WaveStop  `json:"stop,omitempty"`
	StopText string     `json:"stop_reason,omitempty"`
}

// WavesReport reads c's waves for status and the admin page; nil for a
// campaign without waves.
func (s *Store) WavesReport(ctx context.Context, c *repermit.Campaign) (*WavesReport, error) {
	w := c.Waves
	if w == nil {
		return nil, nil
	}
	imported, err := s.Imported(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	cur, err := s.Cursor(ctx, c.ID, "feed")
	if err != nil {
		return nil, err
	}
	ws, err := s.Waves(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	r := &WavesReport{Base: ws.Base, Stop: ws.Stop}
	if ws.Stop != nil {
		r.StopText = ws.Stop.Reason()
	}
	for k := 1; k <= w.Count(imported); k++ {
		lo, hi := w.Bounds(k, imported)
		row := WaveRow{Wave: k, From: lo, To: hi, Figures: ws.Figures[k], State: "waiting"}
		row.Figures.Recipients = hi - lo
		switch {
		case cur >= hi:
			row.State = "queued"
		case cur > lo:
			row.State = "sending"
		}
		if t, ok := ws.Fed[k]; ok {
			row.FedAt = &t
		}
		r.Waves = append(r.Waves, row)
	}
	for _, row := range r.Waves {
		if row.State == "waiting" {
			r.Next = row.Wave
			break
		}
	}
	if r.Next > 1 && ws.Stop == nil {
		prev := r.Waves[r.Next-2]
		switch {
		case prev.Wave <= ws.Ack:
			t := time.Now().UTC()
			r.NextAt = &t
		case prev.FedAt != nil:
			t := prev.FedAt.Add(w.Observe)
			r.NextAt = &t
		}
	} else if r.Next == 1 {
		t := c.StartAt
		r.NextAt = &t
	}
	return r, nil
}
