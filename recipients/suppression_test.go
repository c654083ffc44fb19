package recipients

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/repermit/repermit"
)

func TestLoadSuppression(t *testing.T) {
	ann, ben, cid := Hash("ann@example.com"), Hash("ben@example.com"), Hash("cid@example.com")
	tests := []struct {
		file string
		want []string
		err  string
	}{
		{file: "suppress_plain.txt", want: []string{ann, ben, cid}},
		{file: "suppress_header.csv", want: []string{ann, ben, cid}},
		{file: "empty.csv", want: nil},
		{file: "suppress_bad.txt", err: `suppress_bad.txt:2: invalid address "ben@"`},
		{file: "suppress_fields.txt", err: "suppress_fields.txt:2: expected one entry per line"},
		// 63 hex digits is neither a hash nor an address: a truncated
		// hash must not be ignored.
		{file: "suppress_shorthash.csv", err: "suppress_shorthash.csv:3: invalid address"},
		{file: "missing.csv", err: "missing.csv: cannot open suppression file: open: no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			set, err := LoadSuppression(path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				if !strings.HasPrefix(err.Error(), path) {
					t.Errorf("err %q does not start with the path", err)
				}
				if repermit.ErrorCode(err) != repermit.EINVALID {
					t.Errorf("code %q, want EINVALID", repermit.ErrorCode(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Sorted(maps.Keys(set))
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("hashes\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestExampleSuppression(t *testing.T) {
	set, err := LoadSuppression("../config/examples/suppression.csv")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"noah.neumann@example.net", "karla.klein@example.com"} {
		if _, ok := set[Hash(addr)]; !ok {
			t.Errorf("%s not suppressed", addr)
		}
	}
	if len(set) != 2 {
		t.Errorf("%d entries, want 2", len(set))
	}
}
