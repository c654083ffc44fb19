package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/repermit/repermit"
)

func loadWaves(t *testing.T, waves string) (*File, error) {
	t.Helper()
	dir := t.TempDir()
	body := "id: waves\nfrom: news@acme.example\nsubject: s\nrecipients: r.csv\nconfirm_base_url: https://x.example\ndeadline: 30d\n" +
		"controller: {name: ACME, address: Berlin, contact: privacy@acme.example, privacy_url: https://acme.example/privacy}\n" + waves
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "r.csv"), []byte("email\na@example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path, time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	if err != nil {
		return nil, errors.New(strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""))
	}
	return f, nil
}

func TestWavesKey(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want repermit.Waves
		errs []string // each in the problems; none: valid
	}{
		{"design example", "waves:\n  pilot: 100\n  grow: 2.5\n  observe: 24h\n  stop: {bounces: 2%, complaints: 1, deferrals: 20%}\n",
			repermit.Waves{Pilot: 100, GrowMilli: 2500, Observe: 24 * time.Hour, Stop: repermit.Stop{
				Bounces: repermit.Threshold{BasisPoints: 200}, Complaints: repermit.Threshold{Count: 1}, Deferrals: repermit.Threshold{BasisPoints: 2000}}}, nil},
		{"fixed size, seconds, fraction", "waves: {pilot: 10, grow: 250, observe: 30s, stop: {bounces: 0.25%}}\n",
			repermit.Waves{Pilot: 10, Fixed: 250, Observe: 30 * time.Second, Stop: repermit.Stop{Bounces: repermit.Threshold{BasisPoints: 25}}}, nil},
		{"whole factor", "waves: {pilot: 10, grow: 2, observe: 1m}\n", repermit.Waves{Pilot: 10, GrowMilli: 2000, Observe: time.Minute}, nil},
		{"missing keys", "waves: {stop: {bounces: 2%}}\n", repermit.Waves{},
			[]string{`c.yaml:8: waves: missing required key "pilot"`, `missing required key "grow"`, `missing required key "observe"`}},
		{"bad values", "waves:\n  pilot: 0\n  grow: 1\n  observe: -1h\n  stop: {bounces: 2.555%, complaints: 0, deferrals: 120%, spam: 1}\n", repermit.Waves{},
			[]string{"c.yaml:9: waves.pilot: must be at least 1", "c.yaml:10: waves.grow: 1 would never grow", `c.yaml:11: waves.observe: "-1h" must be a positive`,
				`c.yaml:12: waves.stop.bounces: "2.555%" has more than 2 decimals`, `waves.stop.complaints: "0" is neither a count`,
				`waves.stop.deferrals: "120%" must be above 0% and at most 100%`, `unknown key "waves.stop.spam"`}},
		{"not a mapping", "waves: 100\n", repermit.Waves{}, []string{"c.yaml:8: waves: must be a mapping"}},
		{"bad factor", "waves: {pilot: 1, grow: 2.0001, observe: x}\n", repermit.Waves{},
			[]string{`waves.grow: "2.0001" has more than 3 decimals`, `waves.observe: "x" is not a duration`}},
		{"factor too big", "waves: {pilot: 1, grow: 10.5, observe: 1h}\n", repermit.Waves{}, []string{`waves.grow: factor "10.5" must be above 1 and at most 10`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := loadWaves(t, tt.yaml)
			if len(tt.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if f.Campaign.Waves == nil || *f.Campaign.Waves != tt.want {
					t.Errorf("waves = %+v, want %+v", f.Campaign.Waves, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %q", tt.errs)
			}
			for _, w := range tt.errs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems lack %q:\n%v", w, err)
				}
			}
		})
	}
}
