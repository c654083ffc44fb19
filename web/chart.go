package web

import (
	"fmt"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/repermit/repermit"
)

// maxColumns bounds the time a column width may cover in the activity
// chart: a month of minutes becomes 120 six-hour columns, which a page can
// draw and a reader can see. Aligning the columns to round times can add
// one more.
const maxColumns = 120

// columnWidths are the column widths the chart picks from, smallest first;
// each divides a day, so columns start at round times in UTC.
var columnWidths = []time.Duration{
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute,
	20 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour,
	4 * time.Hour, 6 * time.Hour, 8 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// answerStates are the cumulative lines of the chart, with the colour and
// dash pattern that tell them apart also without colour vision.
var answerStates = []struct {
	state  repermit.State
	colour string
	dash   string
}{
	{repermit.StateConfirmed, "#1a7f37", ""},
	{repermit.StateDeclined, "#cf222e", "6 3"},
	{repermit.StateUnsubscribed, "#8250df", "2 3"},
}

const sendColour = "#54aeff"

// activity is a campaign's timeline cut into at most maxColumns columns of
// equal width.
type activity struct {
	Start time.Time     // start of the first column, UTC
	Width time.Duration // of one column
	// Sent counts the recipients whose first mail went out in each column;
	// reminders do not move a recipient's state and are not in it.
	Sent []int64
	// Answers holds per answer state the running total at the end of each
	// column, in the order of answerStates.
	Answers [][]int64
}

// minSpan is the shortest time axis: a campaign's first minute is drawn as
// one narrow bar at the start of ten minutes, not as a bar across the page.
const minSpan = 10 * time.Minute

// newActivity downsamples a timeline (as redisstore.Store.Timeline returns
// it) into columns; every count lands in exactly one column, so the totals
// stay those of the timeline. The time axis runs from the first minute with
// activity to the last one or to until, whichever is later, so that a quiet
// spell up to now shows as such; a zero until adds nothing.
func newActivity(tl map[repermit.State]map[time.Time]int64, until time.Time) activity {
	var first, last time.Time
	seen := false
	note := func(m map[time.Time]int64) {
		for t := range m {
			if !seen || t.Before(first) {
				first = t
			}
			if !seen || t.After(last) {
				last = t
			}
			seen = true
		}
	}
	note(tl[repermit.StateSent])
	for _, a := range answerStates {
		note(tl[a.state])
	}
	a := activity{Answers: make([][]int64, len(answerStates))}
	if !seen {
		return a
	}
	// until is an end, not a minute with activity: a deadline at 09:00
	// ends the axis with the minute 08:59.
	if u := until.Add(-1).Truncate(time.Minute); !until.IsZero() && u.After(last) {
		last = u
	}
	last = maxTime(last, first.Add(minSpan-time.Minute))
	a.Width, a.Start = columnsFor(first.UTC(), last.UTC())
	n := int(last.Sub(a.Start)/a.Width) + 1
	col := func(t time.Time) int { return int(t.Sub(a.Start) / a.Width) }
	a.Sent = make([]int64, n)
	for t, v := range tl[repermit.StateSent] {
		a.Sent[col(t)] += v
	}
	for i, as := range answerStates {
		cum := make([]int64, n)
		for t, v := range tl[as.state] {
			cum[col(t)] += v
		}
		for j := 1; j < n; j++ {
			cum[j] += cum[j-1]
		}
		a.Answers[i] = cum
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// columnsFor picks the narrowest column width that covers the minutes
// first..last in maxColumns columns, and aligns the first column to that
// width so that columns start at round times.
func columnsFor(first, last time.Time) (width time.Duration, start time.Time) {
	span := last.Add(time.Minute).Sub(first)
	fits := func(w time.Duration) bool { return span <= maxColumns*w }
	for _, w := range columnWidths {
		if fits(w) {
			return w, first.Truncate(w)
		}
	}
	// Beyond 120 days: whole days, as many as it takes.
	w := 24 * time.Hour * time.Duration(math.Ceil(span.Hours()/24/maxColumns))
	return w, first.Truncate(w)
}

// totals returns the total of first mails and of each answer state.
func (a activity) totals() (sent int64, answers []int64) {
	for _, v := range a.Sent {
		sent += v
	}
	answers = make([]int64, len(a.Answers))
	for i, cum := range a.Answers {
		if len(cum) > 0 {
			answers[i] = cum[len(cum)-1]
		}
	}
	return sent, answers
}

// Chart geometry, in viewBox units.
const (
	chartW      = 800
	chartH      = 430
	plotLeft    = 64
	plotRight   = chartW - 16
	answersTop  = 72
	answersBot  = 262
	sendsTop    = 300
	sendsBot    = 390
	xLabelY     = sendsBot + 18
	legendY     = 20
	maxBarWidth = 40
)

type svgText struct {
	X, Y   float64
	Anchor string
	Text   string
}

type svgLine struct{ X1, Y1, X2, Y2 float64 }

type svgBar struct {
	X, Y, W, H float64
	Title      string
}

type svgSeries struct {
	Label, Colour, Dash, Points string
}

type svgLegend struct {
	X, X2, TextX        float64 // swatch from X to X2, label at TextX
	Label, Colour, Dash string
	Bar                 bool
}

// chartView is what chartTemplate draws: every coordinate computed here,
// every text escaped by html/template.
type chartView struct {
	W, H          int
	Title, Desc   string
	Empty         bool
	FrameW        int // the empty chart's frame, inside the viewBox
	FrameH        int
	EmptyX        float64
	EmptyY        float64
	Legend        []svgLegend
	Frames        []svgLine // the two panels' base lines
	Grid          []svgLine
	YLabels       []svgText
	XTicks        []svgLine
	XLabels       []svgText
	PanelTitles   []svgText
	Series        []svgSeries
	Bars          []svgBar
	SendColour    string
	LegendY       float64
	LegendSwatchY float64
}

var chartTemplate = template.Must(template.New("chart").Parse(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-labelledby="chart-title chart-desc" font-family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif" font-size="12">
<title id="chart-title">{{.Title}}</title>
<desc id="chart-desc">{{.Desc}}</desc>
{{- if .Empty}}
<rect x="0.5" y="0.5" width="{{.FrameW}}" height="{{.FrameH}}" rx="6" fill="#f6f8fa" stroke="#d0d7de"/>
<text x="{{.EmptyX}}" y="{{.EmptyY}}" text-anchor="middle" fill="#57606a" font-size="16">No mail sent and no answers yet.</text>
{{- else}}
<g>
{{- range .Legend}}
{{- if .Bar}}
<rect x="{{.X}}" y="{{$.LegendSwatchY}}" width="20" height="10" fill="{{.Colour}}"/>
{{- else}}
<line x1="{{.X}}" y1="{{$.LegendY}}" x2="{{.X2}}" y2="{{$.LegendY}}" stroke="{{.Colour}}" stroke-width="3"{{if .Dash}} stroke-dasharray="{{.Dash}}"{{end}}/>
{{- end}}
<text x="{{.TextX}}" y="{{$.LegendY}}" dy="4" fill="#1f2328">{{.Label}}</text>
{{- end}}
</g>
<g stroke="#eaeef2" stroke-width="1">
{{- range .Grid}}
<line x1="{{.X1}}" y1="{{.Y1}}" x2="{{.X2}}" y2="{{.Y2}}"/>
{{- end}}
{{- range .XTicks}}
<line x1="{{.X1}}" y1="{{.Y1}}" x2="{{.X2}}" y2="{{.Y2}}"/>
{{- end}}
</g>
<g stroke="#8c959f" stroke-width="1">
{{- range .Frames}}
<line x1="{{.X1}}" y1="{{.Y1}}" x2="{{.X2}}" y2="{{.Y2}}"/>
{{- end}}
</g>
<g fill="{{.SendColour}}">
{{- range .Bars}}
<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
{{- end}}
</g>
<g fill="none" stroke-width="2" stroke-linejoin="round">
{{- range .Series}}
<polyline points="{{.Points}}" stroke="{{.Colour}}"{{if .Dash}} stroke-dasharray="{{.Dash}}"{{end}}><title>{{.Label}}</title></polyline>
{{- end}}
</g>
<g fill="#57606a">
{{- range .PanelTitles}}
<text x="{{.X}}" y="{{.Y}}" text-anchor="{{.Anchor}}" fill="#1f2328" font-weight="600">{{.Text}}</text>
{{- end}}
{{- range .YLabels}}
<text x="{{.X}}" y="{{.Y}}" text-anchor="{{.Anchor}}" dy="4">{{.Text}}</text>
{{- end}}
{{- range .XLabels}}
<text x="{{.X}}" y="{{.Y}}" text-anchor="{{.Anchor}}">{{.Text}}</text>
{{- end}}
</g>
{{- end}}
</svg>`))

// SVG draws the activity as an inline SVG: running totals of the answers
// above, first mails per column as bars below, on one time axis in UTC. It
// uses presentation attributes only, since the pages' CSP forbids inline
// styles.
func (a activity) SVG() (template.HTML, error) {
	v := a.view()
	var b strings.Builder
	if err := chartTemplate.Execute(&b, v); err != nil {
		return "", fmt.Errorf("draw chart: %w", err)
	}
	return template.HTML(b.String()), nil
}

func (a activity) view() chartView {
	v := chartView{W: chartW, H: chartH, Title: "Answers and first mails over time"}
	sent, answers := a.totals()
	if len(a.Sent) == 0 {
		v.Empty = true
		v.H = 120
		v.FrameW, v.FrameH = v.W-1, v.H-1
		v.EmptyX, v.EmptyY = chartW/2, 66
		v.Desc = "No recipient has been mailed or has answered yet."
		return v
	}
	n := len(a.Sent)
	end := a.Start.Add(time.Duration(n) * a.Width)
	colW := float64(plotRight-plotLeft) / float64(n)
	x := func(i int) float64 { return plotLeft + colW*float64(i) }

	// Description: what a sighted reader takes from the picture.
	var d strings.Builder
	fmt.Fprintf(&d, "From %s to %s UTC, in columns of %s. ", a.Start.Format("2006-01-02 15:04"), end.Format("2006-01-02 15:04"), widthText(a.Width))
	fmt.Fprintf(&d, "First mails sent: %d in all, at most %d per column. Answers so far:", sent, slices.Max(a.Sent))
	for i, as := range answerStates {
		sep := ","
		if i == len(answerStates)-1 {
			sep = "."
		}
		fmt.Fprintf(&d, " %s %d%s", as.state, answers[i], sep)
	}
	v.Desc = d.String()

	// Legend across the top.
	v.LegendY, v.LegendSwatchY = legendY, legendY-5
	lx := float64(plotLeft)
	v.SendColour = sendColour
	v.Legend = append(v.Legend, svgLegend{X: lx, X2: lx + 20, TextX: lx + 26, Label: "first mails sent", Colour: sendColour, Bar: true})
	lx += 150
	for _, as := range answerStates {
		v.Legend = append(v.Legend, svgLegend{X: lx, X2: lx + 24, TextX: lx + 30, Label: string(as.state), Colour: as.colour, Dash: as.dash})
		lx += 130
	}

	// Upper panel: running totals of answers.
	var maxAns int64
	for _, cum := range a.Answers {
		if len(cum) > 0 {
			maxAns = max(maxAns, cum[len(cum)-1])
		}
	}
	ansTop, ansStep := yScale(maxAns)
	yAns := func(n int64) float64 {
		return answersBot - float64(answersBot-answersTop)*float64(n)/float64(ansTop)
	}
	v.PanelTitles = append(v.PanelTitles, svgText{X: plotLeft, Y: answersTop - 14, Anchor: "start", Text: "Answers received, running total"})
	for t := int64(0); t <= ansTop; t += ansStep {
		y := round(yAns(t))
		if t > 0 {
			v.Grid = append(v.Grid, svgLine{plotLeft, y, plotRight, y})
		}
		v.YLabels = append(v.YLabels, svgText{X: plotLeft - 6, Y: y, Anchor: "end", Text: compactCount(t)})
	}
	for i, as := range answerStates {
		// From zero at the start of the first column to each column's end.
		pts := make([]string, 0, n+1)
		pts = append(pts, point(x(0), yAns(0)))
		for j, c := range a.Answers[i] {
			pts = append(pts, point(x(j+1), yAns(c)))
		}
		v.Series = append(v.Series, svgSeries{
			Label:  fmt.Sprintf("%s: %d", as.state, answers[i]),
			Colour: as.colour, Dash: as.dash, Points: strings.Join(pts, " "),
		})
	}

	// Lower panel: first mails per column.
	maxSent := slices.Max(a.Sent)
	sentTop, sentStep := yScale(maxSent)
	ySent := func(n int64) float64 {
		return sendsBot - float64(sendsBot-sendsTop)*float64(n)/float64(sentTop)
	}
	v.PanelTitles = append(v.PanelTitles, svgText{X: plotLeft, Y: sendsTop - 12, Anchor: "start", Text: "First mails sent per " + widthText(a.Width)})
	for t := int64(0); t <= sentTop; t += sentStep {
		y := round(ySent(t))
		if t > 0 {
			v.Grid = append(v.Grid, svgLine{plotLeft, y, plotRight, y})
		}
		v.YLabels = append(v.YLabels, svgText{X: plotLeft - 6, Y: y, Anchor: "end", Text: compactCount(t)})
	}
	barW := min(colW*0.8, maxBarWidth)
	for i, c := range a.Sent {
		if c == 0 {
			continue
		}
		y := ySent(c)
		from := a.Start.Add(time.Duration(i) * a.Width)
		v.Bars = append(v.Bars, svgBar{
			X: round(x(i) + (colW-barW)/2), Y: round(y), W: round(barW), H: round(sendsBot - y),
			Title: fmt.Sprintf("%s–%s UTC: %d sent", from.Format("Jan 2 15:04"), from.Add(a.Width).Format("15:04"), c),
		})
	}

	v.Frames = []svgLine{
		{plotLeft, answersTop, plotLeft, answersBot}, {plotLeft, answersBot, plotRight, answersBot},
		{plotLeft, sendsTop, plotLeft, sendsBot}, {plotLeft, sendsBot, plotRight, sendsBot},
	}

	// Time axis, shared by both panels.
	pos := func(t time.Time) float64 {
		return round(plotLeft + float64(plotRight-plotLeft)*float64(t.Sub(a.Start))/float64(end.Sub(a.Start)))
	}
	step := timeStep(end.Sub(a.Start))
	prevDay := ""
	for t := a.Start.Truncate(step); !t.After(end); t = t.Add(step) {
		if t.Before(a.Start) {
			continue
		}
		px := pos(t)
		v.XTicks = append(v.XTicks, svgLine{px, answersTop, px, answersBot}, svgLine{px, sendsTop, px, sendsBot + 4})
		day := t.Format("Jan 2")
		label := t.Format("15:04")
		switch {
		case step >= 24*time.Hour:
			label = day
		case day != prevDay:
			label = day + " " + label
		}
		prevDay = day
		anchor := "middle"
		if px-plotLeft < 40 {
			anchor = "start"
		} else if plotRight-px < 40 {
			anchor = "end"
		}
		v.XLabels = append(v.XLabels, svgText{X: px, Y: xLabelY, Anchor: anchor, Text: label})
	}
	v.XLabels = append(v.XLabels, svgText{X: plotRight, Y: xLabelY + 18, Anchor: "end", Text: "time (UTC)"})
	return v
}

// yScale returns a round top for an axis showing 0..m and the step of its
// three to five ticks; counts are whole numbers, so the step is at least 1.
func yScale(m int64) (top, step int64) {
	if m <= 0 {
		return 1, 1
	}
	for mag := int64(1); ; mag *= 10 {
		for _, f := range []int64{1, 2, 5} {
			step = f * mag
			if m <= 4*step {
				top = (m + step - 1) / step * step
				return top, step
			}
		}
	}
}

// timeSteps are the distances between labelled ticks of the time axis.
var timeSteps = []time.Duration{
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute,
	30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 48 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour,
}

// timeStep picks the smallest tick distance that puts at most six ticks on
// an axis spanning span.
func timeStep(span time.Duration) time.Duration {
	for _, s := range timeSteps {
		if span/s <= 6 {
			return s
		}
	}
	weeks := span/(7*24*time.Hour)/6 + 1
	return weeks * 7 * 24 * time.Hour
}

func widthText(w time.Duration) string {
	switch {
	case w == time.Minute:
		return "minute"
	case w < time.Hour:
		return fmt.Sprintf("%d minutes", int(w.Minutes()))
	case w == time.Hour:
		return "hour"
	case w < 24*time.Hour:
		return fmt.Sprintf("%d hours", int(w.Hours()))
	case w == 24*time.Hour:
		return "day"
	}
	return fmt.Sprintf("%d days", int(w.Hours()/24))
}

// compactCount writes an axis label: 950, 1.5k, 20k, 1.2M.
func compactCount(n int64) string {
	trim := func(f float64, unit string) string {
		return strings.TrimSuffix(strconv.FormatFloat(f, 'f', 1, 64), ".0") + unit
	}
	switch {
	case n >= 1_000_000:
		return trim(float64(n)/1e6, "M")
	case n >= 10_000:
		return strconv.FormatInt(n/1000, 10) + "k"
	case n >= 1_000:
		return trim(float64(n)/1e3, "k")
	}
	return strconv.FormatInt(n, 10)
}

func round(f float64) float64 { return math.Round(f*10) / 10 }

func point(x, y float64) string {
	return strconv.FormatFloat(round(x), 'f', -1, 64) + "," + strconv.FormatFloat(round(y), 'f', -1, 64)
}
