package repermit

import "testing"

func TestWaveBounds(t *testing.T) {
	tests := []struct {
		name     string
		w        Waves
		imported int64
		want     [][2]int64 // [lo, hi) of each wave
	}{
		{"factor", Waves{Pilot: 100, GrowMilli: 2500}, 1000, [][2]int64{{0, 100}, {100, 350}, {350, 975}, {975, 1000}}},
		{"fixed", Waves{Pilot: 2, Fixed: 3}, 9, [][2]int64{{0, 2}, {2, 5}, {5, 8}, {8, 9}}},
		{"small factor still grows by one", Waves{Pilot: 1, GrowMilli: 1100}, 5, [][2]int64{{0, 1}, {1, 3}, {3, 5}}},
		{"one wave", Waves{Pilot: 100, GrowMilli: 2000}, 40, [][2]int64{{0, 40}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.w.Count(tt.imported); got != len(tt.want) {
				t.Errorf("Count = %d, want %d", got, len(tt.want))
			}
			for k, b := range tt.want {
				lo, hi := tt.w.Bounds(k+1, tt.imported)
				if lo != b[0] || hi != b[1] {
					t.Errorf("Bounds(%d) = [%d, %d), want %v", k+1, lo, hi, b)
				}
				for i := b[0]; i < b[1]; i++ {
					if got := tt.w.WaveOf(i); got != k+1 {
						t.Errorf("WaveOf(%d) = %d, want %d", i, got, k+1)
					}
				}
			}
		})
	}
}

func TestJudgeExactFigures(t *testing.T) {
	s := Stop{Bounces: Threshold{BasisPoints: 200}, Complaints: Threshold{Count: 1}}
	got := s.Judge("wave 1", WaveFigures{Recipients: 100, Bounces: 5, Complaints: 0})
	if len(got) != 1 || got[0].String() != "wave 1: 5 bounces of 100 recipients (5%) reached stop.bounces 2%" {
		t.Errorf("Judge = %v", got)
	}
	if got := s.Judge("wave 1", WaveFigures{Recipients: 100, Bounces: 1}); len(got) != 0 {
		t.Errorf("1 %% of bounces crossed 2 %%: %v", got)
	}
	if got := s.Judge("wave 2", WaveFigures{Recipients: 250, Complaints: 1}); len(got) != 1 || got[0].Kind != "complaints" {
		t.Errorf("one complaint did not cross complaints: 1: %v", got)
	}
}
