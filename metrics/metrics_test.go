package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/mailer"
	"github.com/repermit/repermit/metrics"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

func TestWorkerObserverCountsEveryOutcome(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := metrics.NewWorkerObserver(reg)
	o.Sent("c", 1)
	o.Sent("c", 1)
	o.Sent("c", 2)
	o.Failed("c", mailer.Temporary)
	o.Failed("c", mailer.RecipientRejected)
	o.Throttled("c", 5)
	o.Suppressed("c")
	o.Expired("c", 7)
	o.SMTPDuration(3 * time.Millisecond)

	want := `
# HELP repermit_mails_sent_total Mails accepted by the SMTP server, by kind (initial or reminder).
# TYPE repermit_mails_sent_total counter
repermit_mails_sent_total{kind="initial"} 2
repermit_mails_sent_total{kind="reminder"} 1
# HELP repermit_mails_failed_total Failed send attempts by class: temporary (retried), recipient_rejected (bounced), message_rejected (campaign paused).
# TYPE repermit_mails_failed_total counter
repermit_mails_failed_total{class="message_rejected"} 0
repermit_mails_failed_total{class="recipient_rejected"} 1
repermit_mails_failed_total{class="temporary"} 1
# HELP repermit_mails_throttled_total Recipients put back for later by the rate limits or a domain penalty.
# TYPE repermit_mails_throttled_total counter
repermit_mails_throttled_total 5
# HELP repermit_suppressed_at_send_total Recipients found on the suppression list at send time and not mailed.
# TYPE repermit_suppressed_at_send_total counter
repermit_suppressed_at_send_total 1
# HELP repermit_expired_total Recipients expired at a campaign deadline.
# TYPE repermit_expired_total counter
repermit_expired_total 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"repermit_mails_sent_total", "repermit_mails_failed_total", "repermit_mails_throttled_total",
		"repermit_suppressed_at_send_total", "repermit_expired_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "repermit_smtp_send_seconds"); n != 1 {
		t.Errorf("latency histogram: %d series, want 1", n)
	}
}

// TestQueueDepthOfAQueueNotYetUsedIsZero: before anything is enqueued
// asynq does not know the queue; a scrape then shows it empty, not
// missing (an alert on the depth would otherwise see no series).
func TestQueueDepthOfAQueueNotYetUsedIsZero(t *testing.T) {
	r := redistest.New(t)
	st := redisstore.New(r.Client, r.Prefix)
	reg := prometheus.NewRegistry()
	if err := metrics.RegisterQueue(reg, st); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP repermit_queue_tasks Tasks in the asynq queue by state.
# TYPE repermit_queue_tasks gauge
repermit_queue_tasks{queue="` + r.Prefix + `",state="active"} 0
repermit_queue_tasks{queue="` + r.Prefix + `",state="archived"} 0
repermit_queue_tasks{queue="` + r.Prefix + `",state="completed"} 0
repermit_queue_tasks{queue="` + r.Prefix + `",state="pending"} 0
repermit_queue_tasks{queue="` + r.Prefix + `",state="retry"} 0
repermit_queue_tasks{queue="` + r.Prefix + `",state="scheduled"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "repermit_queue_tasks"); err != nil {
		t.Error(err)
	}
}

func TestQueueDepthIsReadFromRedis(t *testing.T) {
	r := redistest.New(t)
	st := redisstore.New(r.Client, r.Prefix)
	reg := prometheus.NewRegistry()
	if err := metrics.RegisterQueue(reg, st); err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(r.Client)
	for i := 0; i < 3; i++ {
		if _, err := client.Enqueue(asynq.NewTask("repermit:send", nil), asynq.Queue(r.Prefix), asynq.ProcessIn(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Enqueue(asynq.NewTask("repermit:send", nil), asynq.Queue(r.Prefix)); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP repermit_queue_tasks Tasks in the asynq queue by state.
# TYPE repermit_queue_tasks gauge
repermit_queue_tasks{queue="` + r.Prefix + `",state="active"} 0
repermit_queue_tasks{queue="` + r.Prefix + `",state="archived"} 0
repermit_queue_tasks{queue="` + r.Prefix + `",state="completed"} 0
repermit_queue_tasks{queue="` + r.Prefix + `",state="pending"} 1
repermit_queue_tasks{queue="` + r.Prefix + `",state="retry"} 0
repermit_queue_tasks{queue="` + r.Prefix + `",state="scheduled"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "repermit_queue_tasks"); err != nil {
		t.Error(err)
	}
}

func TestFeedbackIsReadFromRedis(t *testing.T) {
	r := redistest.New(t)
	st := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	now := time.Now()
	c := repermit.Campaign{ID: "fb", From: "news@acme.example", Subject: "s", StartAt: now, Deadline: now.Add(time.Hour)}
	imp, err := st.BeginImport(ctx, c, now)
	if err != nil {
		t.Fatal(err)
	}
	idxs := make([]int64, 200)
	for i := range idxs {
		if err := imp.Add(ctx, fmt.Sprintf("a%d@example.org", i), "", "en", nil); err != nil {
			t.Fatal(err)
		}
		idxs[i] = int64(i)
	}
	if err := imp.Commit(ctx, repermit.ImportResult{Campaign: "fb", Imported: 200}); err != nil {
		t.Fatal(err)
	}
	if errs, err := st.ClaimBatch(ctx, "fb", idxs, 1, now, time.Minute); err != nil || errors.Join(errs...) != nil {
		t.Fatal(err, errs)
	}
	if errs, err := st.MarkSentBatch(ctx, "fb", idxs, 1, now); err != nil || errors.Join(errs...) != nil {
		t.Fatal(err, errs)
	}
	for i, f := range []struct{ kind, source string }{{"complaint", "arf"}, {"bounced", "dsn"}, {"bounced", "dsn"}} {
		if _, _, err := st.RecordFeedback(ctx, redisstore.Feedback{Campaign: "fb", Index: int64(i), Key: fmt.Sprint(i), Kind: f.kind, Source: f.source, At: now}); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	if err := metrics.RegisterFeedback(reg, st); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP repermit_complaint_rate Complaint reports per recipient mailed.
# TYPE repermit_complaint_rate gauge
repermit_complaint_rate{campaign="fb"} 0.005
# HELP repermit_complaint_rate_limit The complaint rate Gmail and Yahoo tolerate from bulk senders.
# TYPE repermit_complaint_rate_limit gauge
repermit_complaint_rate_limit 0.003
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "repermit_complaint_rate", "repermit_complaint_rate_limit"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "repermit_feedback_reports"); n != 12 {
		t.Errorf("%d feedback series, want 12 (3 kinds x 4 sources)", n)
	}
	got, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range got {
		if mf.GetName() != "repermit_feedback_reports" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			want := map[string]float64{"bounced/dsn": 2, "complaint/arf": 1}[labels["kind"]+"/"+labels["source"]]
			if m.GetGauge().GetValue() != want {
				t.Errorf("%v = %v, want %v", labels, m.GetGauge().GetValue(), want)
			}
		}
	}
}
