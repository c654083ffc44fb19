package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/repermit/repermit"
)

// AdminFailureBurst is how many wrong admin tokens a client (an IPv4
// address or an IPv6 /64) may send before it is throttled; after that it
// gets one more try every AdminFailureInterval, and every request of a
// throttled client, with the right token too, is answered 429.
const (
	AdminFailureBurst    = 20
	AdminFailureInterval = 5 * time.Second
)

// admin guards an operator's page with the bearer token. With no token
// configured every request is refused: an admin page must never be open
// by omission.
func (s *Server) admin(next http.HandlerFunc) http.Handler {
	want := sha256.Sum256([]byte(s.cfg.AdminToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, now := limitKey(s.clientAddr(r)), time.Now()
		if s.adminFailures.exhausted(key, now) {
			w.Header().Set("Retry-After", fmt.Sprint(int(AdminFailureInterval.Seconds())))
			http.Error(w, "429 too many wrong admin tokens from your address; wait and retry", http.StatusTooManyRequests)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Comparing digests keeps the comparison constant-time in the
		// token's length too.
		sum := sha256.Sum256([]byte(got))
		if s.cfg.AdminToken == "" || !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			s.adminFailures.allow(key, now)
			w.Header().Set("WWW-Authenticate", `Bearer realm="repermit admin"`)
			http.Error(w, "401 unauthorized: send Authorization: Bearer $REPERMIT_ADMIN_TOKEN", http.StatusUnauthorized)
			return
		}
		next(w, r)
	})
}

type adminRow struct {
	ID                                     string
	Status                                 repermit.CampaignStatus
	Deadline                               time.Time
	Imported, Waiting, Confirmed, Declined int64
	Bounced, Unsubscribed, Expired         int64
	Unreached                              int64
	Rate                                   string
}

func (s *Server) adminCampaigns(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.withTimeout(r)
	defer cancel()
	ids, err := s.store.Campaigns(ctx)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	rows := make([]adminRow, 0, len(ids))
	for _, id := range ids {
		c, err := s.store.Campaign(ctx, id)
		if repermit.ErrorCode(err) == repermit.ENOTFOUND {
			continue // deleted between the listing and now
		}
		if err != nil {
			s.adminFail(w, err)
			return
		}
		st, err := s.store.Stats(ctx, id)
		if err != nil {
			s.adminFail(w, err)
			return
		}
		rows = append(rows, adminRow{
			ID: id, Status: c.Status, Deadline: c.Deadline, Imported: st.Imported,
			Waiting:      st.Counts[repermit.StatePending] + st.Counts[repermit.StateSent],
			Confirmed:    st.Counts[repermit.StateConfirmed],
			Declined:     st.Counts[repermit.StateDeclined],
			Bounced:      st.Counts[repermit.StateBounced],
			Unsubscribed: st.Counts[repermit.StateUnsubscribed],
			Expired:      st.Counts[repermit.StateExpired],
			Unreached:    st.Counts[repermit.StateUnreached],
			Rate:         percent(repermit.NewFunnel(st.Imported, st.Counts).ConfirmationRate, st.Imported),
		})
	}
	s.adminPage(w, "admin_list.html", map[string]any{"Root": root(r.URL.Path), "Campaigns": rows})
}

type funnelRow struct {
	State repermit.State
	N     int64
	Share string
}

func (s *Server) adminCampaign(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.withTimeout(r)
	defer cancel()
	id := r.PathValue("id")
	c, err := s.store.Campaign(ctx, id)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	st, err := s.store.Stats(ctx, id)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	tl, err := s.store.Timeline(ctx, id)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	f := repermit.NewFunnel(st.Imported, st.Counts)
	funnel := make([]funnelRow, len(repermit.States()))
	for i, state := range repermit.States() {
		funnel[i] = funnelRow{State: state, N: st.Counts[state], Share: percent(f.Share(state), st.Imported)}
	}
	// The axis runs up to now while the campaign runs, and to the deadline
	// once it is over.
	until := s.cfg.Now()
	if until.After(c.Deadline) {
		until = c.Deadline
	}
	act := newActivity(tl, until)
	chart, err := act.SVG()
	if err != nil {
		s.adminFail(w, err)
		return
	}
	waves, err := s.store.WavesReport(ctx, c)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	n := st.Counts
	s.adminPage(w, "admin_campaign.html", map[string]any{
		"Waves": waves,
		"Root":  root(r.URL.Path), "Campaign": c, "Stats": st, "Funnel": funnel,
		"Total": st.Counts.Total(), "Rate": percent(f.ConfirmationRate, f.Imported),
		"Chart": chart, "Activity": len(act.Sent) > 0,
		"Summary": adminSummary{
			Imported: f.Imported, Mailed: f.Mailed,
			Confirmed: n[repermit.StateConfirmed], Declined: n[repermit.StateDeclined],
			Bounced: n[repermit.StateBounced], Unsubscribed: n[repermit.StateUnsubscribed],
			Expired: n[repermit.StateExpired], Unreached: n[repermit.StateUnreached], Waiting: f.Waiting,
			Rate:       percent(f.ConfirmationRate, f.Imported),
			MailedRate: percent(f.MailedConfirmationRate, f.Mailed),
			AnswerRate: percent(f.AnswerRate, f.Mailed),
		},
	})
}

// adminSummary is the row of key figures above a campaign's chart.
type adminSummary struct {
	Imported, Mailed, Confirmed, Declined int64
	Bounced, Unsubscribed, Expired        int64
	Unreached                             int64 // never mailed before the deadline
	Waiting                               int64 // pending or sent: no answer yet
	Rate, MailedRate, AnswerRate          string
}

// percent prints a percentage of the Funnel (repermit.Percent), or a dash
// when it is of nothing.
func percent(p float64, of int64) string {
	if of == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f %%", p)
}

// adminPage renders an operator's page. They are few and rarely opened, so
// they are parsed from the embedded files on each request.
func (s *Server) adminPage(w http.ResponseWriter, name string, data any) {
	t, err := template.New(name).Funcs(template.FuncMap{"join": strings.Join}).ParseFS(s.cfg.Pages, name)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		s.adminFail(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprint(w, b.String())
}

// adminFail answers an operator in plain text, with the message an
// application error carries.
func (s *Server) adminFail(w http.ResponseWriter, err error) {
	code := httpStatus(err)
	if code >= 500 {
		s.log.Error("admin page failed", "err", err)
	}
	http.Error(w, repermit.ErrorMessage(err), code)
}
