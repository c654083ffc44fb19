package export

import (
	"bytes"
	"testing"
)

func TestCSVWriterNeutralisesEveryFormulaStart(t *testing.T) {
	for _, tc := range []struct{ cell, want string }{
		{"", `""`},
		{"Anna", `"Anna"`},
		{`=HYPERLINK("http://x","y")`, `"'=HYPERLINK(""http://x"",""y"")"`},
		{"+cmd|' /C calc'!A0", `"'+cmd|' /C calc'!A0"`},
		{"-1+2", `"'-1+2"`},
		{"@SUM(A1)", `"'@SUM(A1)"`},
		{"\t=1+1", "\"'\t=1+1\""},
		{"\r=1+1", "\"'\r=1+1\""},
		{" =1+1", `"' =1+1"`},
		{"\u00a0@x", "\"'\u00a0@x\""},
		{"＝1+1", `"'＝1+1"`},
		{"Anna;=1+1", `"Anna;=1+1"`},
		{"a-b@example.com", `"a-b@example.com"`},
		// A spreadsheet eats one quote, so a cell that is a quote and a
		// formula gets another, and shows as written.
		{"'=already", `"''=already"`},
		{"'Neill", `"'Neill"`},
	} {
		var b bytes.Buffer
		w := NewCSVWriter(&b)
		if err := w.Write([]string{tc.cell}); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := b.String(); got != tc.want+"\r\n" {
			t.Errorf("cell %q written as %q, want %q", tc.cell, got, tc.want+"\r\n")
		}
	}
}
