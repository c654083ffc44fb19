package worker

import (
	"context"
	"time"

	"github.com/hibiken/asynq"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/ledgerio"
)

// TypeCheckpoint signs new consent log checkpoints and sends them out.
const TypeCheckpoint = "repermit:checkpoint"

// checkpointLoop offers a checkpoint round once per CheckpointInterval.
// Every worker does, under one TaskID per interval, so one of them runs it.
func (s *Server) checkpointLoop(ctx context.Context) {
	s.offerEvery(ctx, TypeCheckpoint, "checkpoint", s.cfg.CheckpointInterval, 5*time.Minute)
}

// handleCheckpoint signs a checkpoint of each campaign whose consent log
// grew, at most one per campaign and CheckpointInterval (the store
// refuses a younger one, whichever worker asks), and publishes to the
// witness every checkpoint it has not had yet.
func (s *Server) handleCheckpoint(ctx context.Context, _ *asynq.Task) error {
	ids, err := s.store.Campaigns(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := s.checkpoint(ctx, id, s.cfg.CheckpointInterval); err != nil {
			s.log.Warn("checkpoint", "campaign", id, "err", err)
		}
	}
	return nil
}

// checkpoint signs and publishes one campaign's checkpoint; gap is the
// least age of the previous one (0 at the deadline).
func (s *Server) checkpoint(ctx context.Context, id string, gap time.Duration) error {
	if s.cfg.LedgerSigner == nil {
		return nil
	}
	isLog, err := s.cfg.Store.LedgerIsLog(ctx, id)
	if err != nil || !isLog {
		return err
	}
	signed, made, err := ledgerio.Checkpoint(ctx, s.cfg.Store, id, s.cfg.LedgerSigner, s.cfg.Now(), gap)
	if err != nil || signed == "" {
		return err
	}
	if made {
		s.log.Info("consent log checkpoint signed", "campaign", id, "records", ledgerio.SignedSize(signed))
	}
	if s.cfg.Witness == nil {
		return nil
	}
	size := ledgerio.SignedSize(signed)
	sent, err := s.cfg.Store.Witnessed(ctx, id)
	if err != nil || sent >= size {
		return err
	}
	if err := s.cfg.Witness.Publish(ctx, signed); err != nil {
		// The next round sends the newest checkpoint, which covers this one.
		return err
	}
	return s.cfg.Store.SetWitnessed(ctx, id, size)
}

// checkpointAtDeadline signs the campaign's final checkpoint, whatever the
// age of the last one.
func (s *Server) checkpointAtDeadline(ctx context.Context, c *repermit.Campaign) {
	if err := s.checkpoint(ctx, c.ID, 0); err != nil {
		s.log.Warn("checkpoint at the deadline", "campaign", c.ID, "err", err)
	}
}
