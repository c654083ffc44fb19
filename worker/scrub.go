package worker

import (
	"context"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
)

// scrubErrors is the middleware of every handler: asynq keeps a failed
// task's error in Redis (retried and archived tasks), and an SMTP reply in
// it may quote an address that the deadline erases.
func scrubErrors(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		return repermit.Scrub(h.ProcessTask(ctx, t))
	})
}

// scrubHandler is a slog.Handler that removes e-mail addresses from the
// message and from every attribute (errors included) before passing the
// record on: the worker logs SMTP replies.
type scrubHandler struct{ next slog.Handler }

func newScrubLogger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(scrubHandler); ok {
		return l
	}
	return slog.New(scrubHandler{l.Handler()})
}

func (h scrubHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h scrubHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, repermit.ScrubAddresses(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(scrubAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h scrubHandler) WithAttrs(as []slog.Attr) slog.Handler {
	scrubbed := make([]slog.Attr, len(as))
	for i, a := range as {
		scrubbed[i] = scrubAttr(a)
	}
	return scrubHandler{h.next.WithAttrs(scrubbed)}
}

func (h scrubHandler) WithGroup(name string) slog.Handler {
	return scrubHandler{h.next.WithGroup(name)}
}

func scrubAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, repermit.ScrubAddresses(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, ga := range g {
			out[i] = scrubAttr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, repermit.ScrubAddresses(err.Error()))
		}
		if s, ok := v.Any().(interface{ String() string }); ok {
			return slog.String(a.Key, repermit.ScrubAddresses(s.String()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
