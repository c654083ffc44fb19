package web

import (
	"context"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/redisstore"
)

// Store is what the web server reads and changes in the system of record,
// declared where it is used so that tests can hand the handlers a fake.
// *redisstore.Store implements it in production.
type Store interface {
	// Ping is /healthz's check.
	Ping(ctx context.Context) error
	// CampaignBySeq resolves a token's campaign.
	CampaignBySeq(ctx context.Context, seq uint32) (*repermit.Campaign, error)
	// Recipient is the landing page's read.
	Recipient(ctx context.Context, id string, idx int64) (*repermit.Recipient, error)
	// Record is every answer: the one state change the pages make.
	Record(ctx context.Context, a redisstore.Answer) (redisstore.AnswerResult, error)

	// The admin pages' reads.
	Campaigns(ctx context.Context) ([]string, error)
	Campaign(ctx context.Context, id string) (*repermit.Campaign, error)
	Stats(ctx context.Context, id string) (redisstore.Stats, error)
	Timeline(ctx context.Context, id string) (map[repermit.State]map[time.Time]int64, error)
	WavesReport(ctx context.Context, c *repermit.Campaign) (*redisstore.WavesReport, error)
}

var _ Store = (*redisstore.Store)(nil)
