package repermit_test

import (
	"testing"

	"github.com/repermit/repermit"
)

func TestFunnelFigures(t *testing.T) {
	tests := []struct {
		name   string
		counts repermit.Counts
		want   repermit.Funnel
	}{
		{"nothing imported", repermit.Counts{}, repermit.Funnel{}},
		{"nobody mailed yet", repermit.Counts{repermit.StatePending: 4}, repermit.Funnel{Imported: 4, Waiting: 4}},
		{
			"bounces were mailed, the unreached and suppressed were not",
			repermit.Counts{
				repermit.StatePending: 1, repermit.StateSent: 2, repermit.StateConfirmed: 3, repermit.StateDeclined: 1,
				repermit.StateUnsubscribed: 1, repermit.StateBounced: 2, repermit.StateExpired: 1,
				repermit.StateUnreached: 2, repermit.StateSuppressed: 1,
			},
			repermit.Funnel{
				Imported: 14, Mailed: 10, Answered: 5, Confirmed: 3, Waiting: 3,
				ConfirmationRate: 21.4, MailedConfirmationRate: 30, AnswerRate: 50,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := repermit.NewFunnel(tt.counts.Total(), tt.counts)
			if got.Imported != tt.want.Imported || got.Mailed != tt.want.Mailed || got.Answered != tt.want.Answered ||
				got.Confirmed != tt.want.Confirmed || got.Waiting != tt.want.Waiting ||
				got.ConfirmationRate != tt.want.ConfirmationRate || got.MailedConfirmationRate != tt.want.MailedConfirmationRate ||
				got.AnswerRate != tt.want.AnswerRate {
				t.Errorf("NewFunnel = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPercentRoundsToOneDecimal(t *testing.T) {
	for _, tt := range []struct {
		n, of int64
		want  float64
	}{{0, 0, 0}, {1, 3, 33.3}, {2, 3, 66.7}, {1, 8, 12.5}, {3, 3, 100}, {1, 1000, 0.1}, {1, 2000, 0.1}, {1, 20001, 0}} {
		if got := repermit.Percent(tt.n, tt.of); got != tt.want {
			t.Errorf("Percent(%d, %d) = %v, want %v", tt.n, tt.of, got, tt.want)
		}
	}
}
