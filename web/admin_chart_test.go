package web

import (
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// timeline builds a store-shaped timeline from (state, minute offset from
// t0, count) triples.
func timeline(entries ...any) map[repermit.State]map[time.Time]int64 {
	tl := make(map[repermit.State]map[time.Time]int64)
	for i := 0; i < len(entries); i += 3 {
		st := entries[i].(repermit.State)
		at := t0.Add(time.Duration(entries[i+1].(int)) * time.Minute)
		if tl[st] == nil {
			tl[st] = make(map[time.Time]int64)
		}
		tl[st][at] += int64(entries[i+2].(int))
	}
	return tl
}

// month is 30 days of minutes: 100 first mails a minute for the first
// three days, then one confirmation every 7 minutes, a decline every 61
// and an unsubscription every 997, with an expiry spike that the chart
// leaves out.
func month() map[repermit.State]map[time.Time]int64 {
	var e []any
	for m := 0; m < 30*24*60; m++ {
		if m < 3*24*60 {
			e = append(e, repermit.StateSent, m, 100)
		}
		if m%7 == 0 {
			e = append(e, repermit.StateConfirmed, m, 1)
		}
		if m%61 == 0 {
			e = append(e, repermit.StateDeclined, m, 1)
		}
		if m%997 == 0 {
			e = append(e, repermit.StateUnsubscribed, m, 1)
		}
	}
	e = append(e, repermit.StateExpired, 30*24*60, 5000)
	return timeline(e...)
}

func sumState(tl map[repermit.State]map[time.Time]int64, st repermit.State) int64 {
	var n int64
	for _, v := range tl[st] {
		n += v
	}
	return n
}

func TestActivityDownsamplingKeepsTotals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tl      map[repermit.State]map[time.Time]int64
		until   time.Time
		columns int
		width   time.Duration
	}{
		{"no data", nil, t0, 0, 0},
		{"only expiry", timeline(repermit.StateExpired, 0, 3), t0, 0, 0},
		// One minute of activity is the start of a ten-minute axis.
		{"one point", timeline(repermit.StateSent, 5, 3), time.Time{}, 10, time.Minute},
		{"one answer, no mail", timeline(repermit.StateConfirmed, 5, 1), time.Time{}, 10, time.Minute},
		{"expiry does not stretch the axis", timeline(repermit.StateSent, 0, 3, repermit.StateExpired, 24*60, 3), time.Time{}, 10, time.Minute},
		{"two hours", timeline(repermit.StateSent, 0, 10, repermit.StateSent, 119, 10, repermit.StateConfirmed, 60, 4), time.Time{}, 120, time.Minute},
		{"until before the data adds nothing", timeline(repermit.StateSent, 0, 10, repermit.StateSent, 119, 10), t0.Add(-time.Hour), 120, time.Minute},
		// Three quiet hours up to now: 181 minutes in two-minute columns.
		{"until extends the axis", timeline(repermit.StateSent, 0, 10), t0.Add(3*time.Hour + 30*time.Second), 91, 2 * time.Minute},
		// 121 minutes do not fit in 120 one-minute columns.
		{"121 minutes", timeline(repermit.StateSent, 0, 1, repermit.StateDeclined, 120, 1), time.Time{}, 61, 2 * time.Minute},
		{"121 minutes, unaligned", timeline(repermit.StateSent, 1, 1, repermit.StateDeclined, 121, 1), time.Time{}, 61, 2 * time.Minute},
		// Six-hour columns aligned to 06:00 for a start at 09:00.
		{"thirty days of minutes", month(), t0.Add(30 * 24 * time.Hour), 121, 6 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newActivity(tc.tl, tc.until)
			if len(a.Sent) != tc.columns || a.Width != tc.width {
				t.Fatalf("%d columns of %v, want %d of %v", len(a.Sent), a.Width, tc.columns, tc.width)
			}
			if len(a.Sent) > maxColumns+1 {
				t.Errorf("%d columns, more than %d", len(a.Sent), maxColumns+1)
			}
			for i, cum := range a.Answers {
				if len(cum) != len(a.Sent) {
					t.Errorf("%s: %d columns, sends have %d", answerStates[i].state, len(cum), len(a.Sent))
				}
			}
			sent, answers := a.totals()
			if want := sumState(tc.tl, repermit.StateSent); sent != want {
				t.Errorf("first mails: %d in the chart, %d in the timeline", sent, want)
			}
			for i, as := range answerStates {
				if want := sumState(tc.tl, as.state); answers[i] != want {
					t.Errorf("%s: %d in the chart, %d in the timeline", as.state, answers[i], want)
				}
				for j := 1; j < len(a.Answers[i]); j++ {
					if a.Answers[i][j] < a.Answers[i][j-1] {
						t.Errorf("%s: running total falls at column %d", as.state, j)
					}
				}
			}
			var first time.Time
			for _, m := range tc.tl {
				for at := range m {
					if first.IsZero() || at.Before(first) {
						first = at
					}
				}
			}
			if len(a.Sent) > 0 && (a.Start.After(first) || !a.Start.Add(a.Width).After(first)) {
				t.Errorf("first column starts at %v, not in the column of the first entry %v", a.Start, first)
			}
		})
	}
}

// svgDoc is the part of the chart's markup the tests read back.
type svgDoc struct {
	XMLName   xml.Name `xml:"svg"`
	Role      string   `xml:"role,attr"`
	ViewBox   string   `xml:"viewBox,attr"`
	Title     string   `xml:"title"`
	Desc      string   `xml:"desc"`
	Groups    []svgG   `xml:"g"`
	EmptyText []string `xml:"text"`
}

type svgG struct {
	Rects []struct {
		Height string `xml:"height,attr"`
		Title  string `xml:"title"`
	} `xml:"rect"`
	Polylines []struct {
		Points string `xml:"points,attr"`
		Stroke string `xml:"stroke,attr"`
	} `xml:"polyline"`
	Texts []string `xml:"text"`
}

func parseSVG(t *testing.T, markup string) svgDoc {
	t.Helper()
	var doc svgDoc
	if err := xml.Unmarshal([]byte(markup), &doc); err != nil {
		t.Fatalf("chart is not well-formed XML: %v\n%s", err, markup)
	}
	return doc
}

func TestActivityChartMarkup(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tl        map[repermit.State]map[time.Time]int64
		bars      int
		wantTexts []string // among the chart's texts
		wantDesc  string
	}{
		{"no data", nil, 0, []string{"No mail sent and no answers yet."}, "No recipient has been mailed"},
		{"one point", timeline(repermit.StateSent, 0, 7), 1, []string{"first mails sent", "confirmed", "Dec 1 09:00", "09:10", "8"}, "First mails sent: 7 in all"},
		{"answers without mail", timeline(repermit.StateConfirmed, 0, 2, repermit.StateDeclined, 3, 1), 0, []string{"2", "0"}, "confirmed 2, declined 1, unsubscribed 0."},
		{"thirty days", month(), 13, []string{"Dec 7", "Dec 28", "First mails sent per 6 hours", "40k", "8k"}, "in columns of 6 hours"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svg, err := newActivity(tc.tl, time.Time{}).SVG()
			if err != nil {
				t.Fatal(err)
			}
			markup := string(svg)
			if strings.Contains(markup, "style=") {
				t.Errorf("chart uses inline styles, which the CSP blocks:\n%s", markup)
			}
			doc := parseSVG(t, markup)
			if doc.Role != "img" || doc.Title == "" || !strings.Contains(doc.Desc, tc.wantDesc) {
				t.Errorf("role %q, title %q, desc %q; want img, a title and a desc with %q", doc.Role, doc.Title, doc.Desc, tc.wantDesc)
			}
			texts := doc.EmptyText
			bars, lines := 0, 0
			for _, g := range doc.Groups {
				texts = append(texts, g.Texts...)
				for _, r := range g.Rects {
					if r.Title != "" {
						bars++
					}
				}
				lines += len(g.Polylines)
				for _, p := range g.Polylines {
					if n := strings.Count(p.Points, ","); n != len(newActivity(tc.tl, time.Time{}).Sent)+1 {
						t.Errorf("line %s has %d points, want one per column plus the origin", p.Stroke, n)
					}
				}
			}
			if bars != tc.bars {
				t.Errorf("%d bars, want %d", bars, tc.bars)
			}
			if wantLines := len(answerStates); tc.tl != nil && lines != wantLines {
				t.Errorf("%d lines, want %d", lines, wantLines)
			}
			for _, want := range tc.wantTexts {
				found := false
				for _, txt := range texts {
					found = found || txt == want
				}
				if !found {
					t.Errorf("no text %q among %q", want, texts)
				}
			}
		})
	}
}

func TestYScale(t *testing.T) {
	for _, tc := range []struct{ max, top, step int64 }{
		{0, 1, 1}, {1, 1, 1}, {3, 3, 1}, {4, 4, 1}, {5, 6, 2}, {9, 10, 5}, {17, 20, 5},
		{21, 30, 10}, {100, 100, 50}, {4321, 6000, 2000}, {999_999, 1_000_000, 500_000},
	} {
		top, step := yScale(tc.max)
		if top != tc.top || step != tc.step {
			t.Errorf("yScale(%d) = %d, %d; want %d, %d", tc.max, top, step, tc.top, tc.step)
		}
		if top < tc.max || top/step > 5 {
			t.Errorf("yScale(%d) = %d, %d: top below the data or too many ticks", tc.max, top, step)
		}
	}
}

func TestCompactCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 950: "950", 1000: "1k", 1500: "1.5k", 20_000: "20k", 1_200_000: "1.2M", 2_000_000: "2M"} {
		if got := compactCount(n); got != want {
			t.Errorf("compactCount(%d) = %q, want %q", n, got, want)
		}
	}
}

// adminActivity gives the harness's campaign answers at known minutes:
// recipients 0 and 1 confirm, 2 declines, 3 unsubscribes, 4 stays silent.
func adminActivity(t testing.TB, h *harness) {
	t.Helper()
	ctx := context.Background()
	for i, st := range []repermit.State{repermit.StateConfirmed, repermit.StateConfirmed, repermit.StateDeclined, repermit.StateUnsubscribed} {
		var topics []string
		if st == repermit.StateConfirmed {
			topics = []string{"yoga"}
		}
		_, err := h.store.Record(ctx, redisstore.Answer{
			Campaign: h.c.ID, Index: int64(i), State: st, Topics: topics, At: t0.Add(time.Duration(10+20*i) * time.Minute),
			IP: "192.0.2.0", UserAgent: "test", WordingSHA256: strings.Repeat("0", 64),
		})
		if err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
	}
}

func adminGet(h *harness, path string) *httptest.ResponseRecorder {
	h.t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	return h.do(req)
}

func TestAdminCampaignPageShowsActivityChart(t *testing.T) {
	h := newHarness(t)
	adminActivity(t, h)

	w := adminGet(h, "/admin/campaigns/camp")
	wantStatus(t, "admin campaign", w, http.StatusOK)
	page := w.Body.String()
	start, end := strings.Index(page, "<svg"), strings.Index(page, "</svg>")
	if start < 0 || end < start {
		t.Fatalf("page has no chart:\n%s", page)
	}
	doc := parseSVG(t, page[start:end+len("</svg>")])
	if !strings.Contains(doc.Desc, "First mails sent: 5 in all") || !strings.Contains(doc.Desc, "confirmed 2, declined 1, unsubscribed 1.") {
		t.Errorf("chart description %q does not match the activity", doc.Desc)
	}
	for _, want := range []string{
		"<dt>Mailed</dt><dd>5</dd>",
		"<dt>Confirmed</dt><dd>2</dd>",
		"<dt>Declined</dt><dd>1</dd>",
		"<dt>Unsubscribed</dt><dd>1</dd>",
		"Waiting</dt><dd>1</dd>",
		"<dt>Re-permitted</dt><dd>40.0 %</dd>",
		"Of the recipients mailed, 80.0 % answered and 40.0 % confirmed.",
		`<tr><td>yoga</td><td class="num">2</td></tr>`,
		`<tr><td>events</td><td class="num">0</td></tr>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "style=") || strings.Contains(page, "<script") {
		t.Error("page has inline styles or scripts, which the CSP blocks")
	}

	req := httptest.NewRequest(http.MethodGet, "/admin/campaigns/camp", nil)
	w = h.do(req)
	wantStatus(t, "without the token", w, http.StatusUnauthorized)
	if strings.Contains(w.Body.String(), "<svg") {
		t.Error("401 answer carries the chart")
	}
}

func TestAdminCampaignPageWithoutActivity(t *testing.T) {
	h := newHarness(t)
	launch(t, h.store, "quiet", 0, func(int) string { return "" })
	w := adminGet(h, "/admin/campaigns/quiet")
	wantStatus(t, "admin campaign", w, http.StatusOK)
	if !strings.Contains(w.Body.String(), "No mail sent and no answers yet.") {
		t.Errorf("empty campaign page lacks the empty chart:\n%s", w.Body.String())
	}
	w = adminGet(h, "/admin/campaigns")
	wantStatus(t, "admin list", w, http.StatusOK)
	b, _ := io.ReadAll(w.Result().Body)
	for _, want := range []string{`href="campaigns/quiet"`, `<th scope="col" class="n">Expired</th>`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("list lacks %q", want)
		}
	}
}
