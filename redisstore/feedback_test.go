package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// launchCampaign imports n recipients a0@example.com … into c and
// commits it.
func launchCampaign(t *testing.T, s *redisstore.Store, c repermit.Campaign, n int) repermit.Campaign {
	t.Helper()
	ctx := context.Background()
	imp, err := s.BeginImport(ctx, c, t0)
	if err != nil {
		t.Fatalf("BeginImport: %v", err)
	}
	for i := 0; i < n; i++ {
		if err := imp.Add(ctx, fmt.Sprintf("a%d@example.com", i), "", "", nil); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: c.ID, Imported: int64(n)}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return imp.Campaign()
}

func wavesCampaign(id string, w *repermit.Waves) repermit.Campaign {
	return repermit.Campaign{ID: id, From: "news@acme.example", Subject: "s", StartAt: t0, Deadline: t0.Add(24 * time.Hour), Waves: w}
}

// TestFeedbackCountsEachReportOnce: a report counts once per key, by kind
// and source; soft bounces count per recipient; a deferral counts toward
// nothing campaign-wide; the keys are forgotten after FeedbackSeenTTL.
func TestFeedbackCountsEachReportOnce(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 10)
	mail(t, s, "camp", span(0, 8), t0)

	fb := func(key, kind, source string, idx int64) redisstore.Feedback {
		return redisstore.Feedback{Campaign: "camp", Index: idx, Key: key, Kind: kind, Source: source, At: t0}
	}
	steps := []struct {
		name  string
		f     redisstore.Feedback
		first bool
		soft  int64
	}{
		{"hard bounce by DSN", fb("k1", redisstore.FeedbackHard, "dsn", 1), true, 0},
		{"the same DSN again", fb("k1", redisstore.FeedbackHard, "dsn", 1), false, 0},
		{"soft bounce", fb("k2", redisstore.FeedbackSoft, "dsn", 2), true, 1},
		{"the same soft bounce again", fb("k2", redisstore.FeedbackSoft, "dsn", 2), false, 1},
		{"another soft bounce of the same recipient", fb("k3", redisstore.FeedbackSoft, "smtp", 2), true, 2},
		{"a hard bounce reports the soft count", fb("k4", redisstore.FeedbackHard, "smtp", 2), true, 2},
		{"complaint by ARF", fb("k5", redisstore.FeedbackComplaint, "arf", 3), true, 0},
		{"complaint by webhook", fb("k6", redisstore.FeedbackComplaint, "webhook", 4), true, 0},
		{"deferral", fb("k7", redisstore.FeedbackDeferred, "smtp", 5), true, 0},
	}
	for _, st := range steps {
		first, soft, err := s.RecordFeedback(ctx, st.f)
		if err != nil || first != st.first || soft != st.soft {
			t.Errorf("%s: RecordFeedback = %v %d %v; want %v %d", st.name, first, soft, err, st.first, st.soft)
		}
	}
	if _, _, err := s.RecordFeedback(ctx, redisstore.Feedback{Campaign: "nope", Key: "k", Kind: redisstore.FeedbackHard, Source: "dsn"}); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("feedback on an unknown campaign: %v; want ENOTFOUND", err)
	}

	st, err := s.Stats(ctx, "camp")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]int64{
		redisstore.FeedbackHard:      {"smtp": 1, "dsn": 1, "arf": 0, "webhook": 0},
		redisstore.FeedbackSoft:      {"smtp": 1, "dsn": 1, "arf": 0, "webhook": 0},
		redisstore.FeedbackComplaint: {"smtp": 0, "dsn": 0, "arf": 1, "webhook": 1},
		redisstore.FeedbackDeferred:  {"smtp": 0, "dsn": 0, "arf": 0, "webhook": 0},
	}
	for kind, bySource := range want {
		if got := st.FeedbackBy(kind); fmt.Sprint(got) != fmt.Sprint(bySource) {
			t.Errorf("FeedbackBy(%s) = %v; want %v", kind, got, bySource)
		}
	}
	// Eight of ten were mailed: two complaints are a rate of 2/8.
	if got := st.Mailed(); got != 8 {
		t.Errorf("Mailed = %d; want 8", got)
	}
	if got := st.ComplaintRate(); got != 0.25 {
		t.Errorf("ComplaintRate = %v; want 0.25", got)
	}

	var seenTTL time.Duration
	for _, k := range r.Keys(t) {
		if strings.HasSuffix(k, "}:fb:seen") {
			seenTTL = r.Client.TTL(ctx, k).Val()
		}
	}
	if seenTTL <= redisstore.FeedbackSeenTTL-time.Minute || seenTTL > redisstore.FeedbackSeenTTL {
		t.Errorf("report keys kept for %v; want %v", seenTTL, redisstore.FeedbackSeenTTL)
	}

	// The soft bounce counts are per recipient data: purge removes them.
	if err := s.SetStatus(ctx, "camp", repermit.StatusFinished, repermit.StatusRunning); err != nil {
		t.Fatal(err)
	}
	if err := s.PurgeRecipients(ctx, "camp"); err != nil {
		t.Fatal(err)
	}
	for _, k := range r.Keys(t) {
		if strings.HasSuffix(k, "}:fb:soft") {
			t.Errorf("%s left after purge", k)
		}
	}
}

// TestComplaintRateOfNoMail: before any mail the rate is 0, not NaN.
func TestComplaintRateOfNoMail(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	launch(t, s, "camp", 3)
	if _, _, err := s.RecordFeedback(ctx, redisstore.Feedback{Campaign: "camp", Index: 0, Key: "k", Kind: redisstore.FeedbackComplaint, Source: "arf"}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(ctx, "camp")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mailed() != 0 || st.ComplaintRate() != 0 {
		t.Errorf("Mailed %d, ComplaintRate %v; want 0, 0", st.Mailed(), st.ComplaintRate())
	}
}

// TestFeedbackCountsPerWaveAsGoDoes: the script that files a report under
// its recipient's wave computes the wave as repermit.Waves.WaveOf does,
// for growing and for fixed waves.
func TestFeedbackCountsPerWaveAsGoDoes(t *testing.T) {
	cases := []struct {
		name  string
		waves repermit.Waves
		n     int
	}{
		{"doubling", repermit.Waves{Pilot: 2, GrowMilli: 2000, Observe: time.Hour}, 40},
		{"growing by 1.5, at least one more", repermit.Waves{Pilot: 1, GrowMilli: 1500, Observe: time.Hour}, 30},
		{"fixed after the pilot", repermit.Waves{Pilot: 3, Fixed: 5, Observe: time.Hour}, 21},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _ := newStore(t)
			ctx := context.Background()
			w := c.waves
			launchCampaign(t, s, wavesCampaign("camp", &w), c.n)
			want := map[int]repermit.WaveFigures{}
			for i := int64(0); i < int64(c.n); i++ {
				kind := []string{redisstore.FeedbackHard, redisstore.FeedbackComplaint, redisstore.FeedbackDeferred, redisstore.FeedbackSoft}[i%4]
				f := redisstore.Feedback{Campaign: "camp", Index: i, Key: fmt.Sprint("k", i), Kind: kind, Source: "smtp"}
				if _, _, err := s.RecordFeedback(ctx, f); err != nil {
					t.Fatal(err)
				}
				// A replay must not count in the wave either.
				if _, _, err := s.RecordFeedback(ctx, f); err != nil {
					t.Fatal(err)
				}
				k := w.WaveOf(i)
				fg := want[k]
				switch kind {
				case redisstore.FeedbackHard:
					fg.Bounces++
				case redisstore.FeedbackComplaint:
					fg.Complaints++
				default:
					fg.Deferrals++
				}
				want[k] = fg
			}
			ws, err := s.Waves(ctx, "camp")
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(ws.Figures) != fmt.Sprint(want) {
				t.Errorf("wave figures = %v; want %v", ws.Figures, want)
			}
		})
	}
}

// TestWavesStopAndResume: the waves pause a running campaign once, with
// their reason; resume lets the judged waves go on, and with reset makes
// the campaign-wide figures start at the next wave.
func TestWavesStopAndResume(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	w := &repermit.Waves{Pilot: 2, GrowMilli: 2000, Observe: time.Hour, Stop: repermit.Stop{Bounces: repermit.Threshold{Count: 1}}}
	launchCampaign(t, s, wavesCampaign("camp", w), 14)
	launch(t, s, "plain", 1)

	if _, err := s.Waves(ctx, "nope"); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("Waves(nope) = %v; want ENOTFOUND", err)
	}
	ws, err := s.Waves(ctx, "camp")
	if err != nil || ws.Ack != 0 || ws.Base != 1 || ws.Stop != nil || len(ws.Fed) != 0 {
		t.Fatalf("fresh Waves = %+v, %v", ws, err)
	}

	fed := t0.Add(time.Minute)
	for _, at := range []time.Time{fed, fed.Add(time.Hour)} {
		if err := s.MarkWaveFed(ctx, "camp", 1, at); err != nil {
			t.Fatal(err)
		}
	}
	if ws, _ := s.Waves(ctx, "camp"); !ws.Fed[1].Equal(fed) || len(ws.Fed) != 1 {
		t.Errorf("Fed = %v; want wave 1 at %v (the first record stays)", ws.Fed, fed)
	}

	stop := redisstore.WaveStop{At: fed.Add(time.Hour), Wave: 1, NextWave: 2, Crossed: []repermit.Crossing{
		{Scope: "wave 1", Kind: "bounces", Count: 1, Recipients: 2, Threshold: repermit.Threshold{Count: 1}},
	}}
	if paused, err := s.StopWaves(ctx, "camp", stop); err != nil || !paused {
		t.Fatalf("StopWaves = %v, %v; want paused", paused, err)
	}
	if paused, err := s.StopWaves(ctx, "camp", stop); err != nil || paused {
		t.Errorf("StopWaves of a paused campaign = %v, %v; want false", paused, err)
	}
	assertStatus(t, s, "camp", repermit.StatusPaused)
	ws, _ = s.Waves(ctx, "camp")
	if ws.Stop == nil || ws.Stop.Wave != 1 || ws.Stop.NextWave != 2 || len(ws.Stop.Crossed) != 1 {
		t.Fatalf("Stop = %+v", ws.Stop)
	}
	if reason := ws.Stop.Reason(); !strings.HasPrefix(reason, "waves stopped before wave 2: wave 1: 1 bounces of 2 recipients") {
		t.Errorf("Reason = %q", reason)
	}

	if err := s.Resume(ctx, "camp", false); err != nil {
		t.Fatal(err)
	}
	assertStatus(t, s, "camp", repermit.StatusRunning)
	if ws, _ := s.Waves(ctx, "camp"); ws.Stop != nil || ws.Ack != 1 || ws.Base != 1 {
		t.Errorf("after resume: Stop %v, Ack %d, Base %d; want nil, 1, 1", ws.Stop, ws.Ack, ws.Base)
	}

	stop.Wave, stop.NextWave = 2, 3
	if paused, err := s.StopWaves(ctx, "camp", stop); err != nil || !paused {
		t.Fatalf("second StopWaves = %v, %v", paused, err)
	}
	if err := s.Resume(ctx, "camp", true); err != nil {
		t.Fatal(err)
	}
	if ws, _ := s.Waves(ctx, "camp"); ws.Stop != nil || ws.Ack != 2 || ws.Base != 3 {
		t.Errorf("after resume with reset: Stop %v, Ack %d, Base %d; want nil, 2, 3", ws.Stop, ws.Ack, ws.Base)
	}

	// Resume of a campaign the operator paused (no wave stop) touches no
	// wave field.
	if err := s.SetStatus(ctx, "plain", repermit.StatusPaused, repermit.StatusRunning); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStatus(ctx, "camp", repermit.StatusCancelled, repermit.StatusRunning); err != nil {
		t.Fatal(err)
	}
	resumes := []struct {
		id     string
		code   string
		status repermit.CampaignStatus
	}{
		{"plain", "", repermit.StatusRunning},
		{"plain", "", repermit.StatusRunning}, // running already: nothing to do
		{"camp", repermit.ECONFLICT, repermit.StatusCancelled},
		{"nope", repermit.ENOTFOUND, ""},
	}
	for _, rs := range resumes {
		err := s.Resume(ctx, rs.id, false)
		if repermit.ErrorCode(err) != rs.code || (rs.code == "" && err != nil) {
			t.Errorf("Resume(%s) = %v; want code %q", rs.id, err, rs.code)
		}
		if rs.status != "" {
			assertStatus(t, s, rs.id, rs.status)
		}
	}
	if ws, _ := s.Waves(ctx, "plain"); ws.Ack != 0 || ws.Base != 1 {
		t.Errorf("operator's resume set Ack %d Base %d", ws.Ack, ws.Base)
	}
	if paused, err := s.StopWaves(ctx, "camp", stop); err != nil || paused {
		t.Errorf("StopWaves of a cancelled campaign = %v, %v; want false", paused, err)
	}
	assertStatus(t, s, "camp", repermit.StatusCancelled)
}

func assertStatus(t *testing.T, s *redisstore.Store, id string, want repermit.CampaignStatus) {
	t.Helper()
	c, err := s.Campaign(context.Background(), id)
	if err != nil || c.Status != want {
		t.Errorf("campaign %s status %v, %v; want %s", id, c.Status, err, want)
	}
}

// TestWavesReportFollowsTheFeeder: each wave is waiting, sending or
// queued as the feed cursor passes it, and the next wave's time follows
// the last one queued, the campaign start, a resume, or a stop.
func TestWavesReportFollowsTheFeeder(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	w := &repermit.Waves{Pilot: 2, GrowMilli: 2000, Observe: time.Hour}
	c := launchCampaign(t, s, wavesCampaign("camp", w), 10) // waves 0-2, 2-6, 6-10
	plain := launch(t, s, "plain", 1)
	if rep, err := s.WavesReport(ctx, &plain); err != nil || rep != nil {
		t.Errorf("WavesReport of a campaign without waves = %+v, %v; want nil", rep, err)
	}
	fed := t0.Add(10 * time.Minute)
	steps := []struct {
		name   string
		do     func()
		cursor int64
		states string
		next   int
		nextAt func(now time.Time) *time.Time
	}{
		{"before the start", nil, 0, "waiting waiting waiting", 1, func(time.Time) *time.Time { return &c.StartAt }},
		{"pilot half queued", nil, 1, "sending waiting waiting", 2, nil},
		{"pilot queued", func() { mustDo(t, s.MarkWaveFed(ctx, "camp", 1, fed)) }, 2, "queued waiting waiting", 2,
			func(time.Time) *time.Time { at := fed.Add(time.Hour); return &at }},
		{"wave 2 sending", nil, 4, "queued sending waiting", 3, nil},
		{"stopped after wave 2", func() {
			_, err := s.StopWaves(ctx, "camp", redisstore.WaveStop{Wave: 2, NextWave: 3})
			mustDo(t, err)
		}, 6, "queued queued waiting", 3, nil},
		{"resumed: the next wave goes now", func() { mustDo(t, s.Resume(ctx, "camp", false)) }, 6, "queued queued waiting", 3,
			func(now time.Time) *time.Time { return &now }},
		{"all queued", nil, 10, "queued queued queued", 0, nil},
	}
	var cur int64
	for _, st := range steps {
		if st.do != nil {
			st.do()
		}
		if moved, err := s.AdvanceCursor(ctx, "camp", "feed", cur, st.cursor); err != nil || !moved {
			t.Fatalf("%s: AdvanceCursor %d->%d = %v, %v", st.name, cur, st.cursor, moved, err)
		}
		cur = st.cursor
		before := time.Now().UTC()
		rep, err := s.WavesReport(ctx, &c)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		var states []string
		for _, row := range rep.Waves {
			states = append(states, row.State)
			if row.Figures.Recipients != row.To-row.From {
				t.Errorf("%s: wave %d has %d recipients for %d-%d", st.name, row.Wave, row.Figures.Recipients, row.From, row.To)
			}
		}
		if got := strings.Join(states, " "); got != st.states || rep.Next != st.next {
			t.Errorf("%s: waves %q next %d; want %q next %d", st.name, got, rep.Next, st.states, st.next)
		}
		switch want := (*time.Time)(nil); {
		case st.nextAt != nil:
			want = st.nextAt(before)
			if rep.NextAt == nil || rep.NextAt.Before(*want) || rep.NextAt.Sub(*want) > time.Minute {
				t.Errorf("%s: next wave at %v; want %v", st.name, rep.NextAt, *want)
			}
		case rep.NextAt != nil:
			t.Errorf("%s: next wave at %v; want none", st.name, rep.NextAt)
		}
		if (rep.Stop != nil) != (rep.StopText != "") {
			t.Errorf("%s: stop %+v with reason %q", st.name, rep.Stop, rep.StopText)
		}
	}
	if rep, _ := s.WavesReport(ctx, &c); rep.Waves[0].FedAt == nil || !rep.Waves[0].FedAt.Equal(fed) || rep.Waves[1].FedAt != nil {
		t.Errorf("queued at: %v %v", rep.Waves[0].FedAt, rep.Waves[1].FedAt)
	}
	gone := c
	gone.ID = "nope"
	if _, err := s.WavesReport(ctx, &gone); repermit.ErrorCode(err) != repermit.ENOTFOUND {
		t.Errorf("WavesReport of an unknown campaign: %v", err)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
