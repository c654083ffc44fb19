package mailer

import (
	"bytes"
	"io"
	"testing"

	"github.com/repermit/repermit/smtpsink"
)

func BenchmarkBuild(b *testing.B) {
	tpl := loadTemplates(b, "")
	c := testCampaign()
	d := testData(c, testRecipient(1, "de-AT"))
	b.ReportAllocs()
	for b.Loop() {
		m, err := tpl.Build(d, Reminder(1))
		if err != nil {
			b.Fatal(err)
		}
		// go-mail encodes when writing, so a build includes the encoding.
		if _, err := m.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildWire is BenchmarkBuild for the bytes the worker sends,
// with one buffer reused as the worker reuses it.
func BenchmarkBuildWire(b *testing.B) {
	tpl := loadTemplates(b, "")
	c := testCampaign()
	d := testData(c, testRecipient(1, "de-AT"))
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tpl.BuildWire(d, Reminder(1), "", &buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPoolSend measures build plus send to a sink that discards, in
// mails per second, on one connection and on sixteen.
func BenchmarkPoolSend(b *testing.B) {
	for _, size := range []int{1, 16} {
		b.Run(map[int]string{1: "conns=1", 16: "conns=16"}[size], func(b *testing.B) {
			tpl := loadTemplates(b, "")
			s := startSink(b, smtpsink.Options{Discard: true})
			p := sinkPool(b, s, size)
			c := testCampaign()
			d := testData(c, testRecipient(1, "en"))
			b.SetParallelism(size) // GOMAXPROCS*size senders keep every connection busy
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m, err := tpl.Build(d, Initial)
					if err != nil {
						b.Error(err)
						return
					}
					if err := p.Send(b.Context(), m); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "mails/s")
		})
	}
}
