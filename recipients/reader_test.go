package recipients

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/repermit/repermit"
)

// readAll reads every row of a file, collecting rows and row errors until
// EOF or a fatal error.
func readAll(t *testing.T, r io.Reader, name string) (rows []Row, rowErrs []*RowError, fatal error) {
	t.Helper()
	rd, err := NewReader(r, name)
	if err != nil {
		return nil, nil, err
	}
	for {
		row, err := rd.Next()
		if err == io.EOF {
			return rows, rowErrs, nil
		}
		var re *RowError
		if errors.As(err, &re) {
			rowErrs = append(rowErrs, re)
			continue
		}
		if err != nil {
			// A fatal error must stick.
			if _, again := rd.Next(); again == nil || again.Error() != err.Error() {
				t.Errorf("Next after fatal error %q returned %v", err, again)
			}
			return rows, rowErrs, err
		}
		rows = append(rows, row)
	}
}

func TestReaderFiles(t *testing.T) {
	type rowErr struct {
		line int
		msg  string // substring
	}
	tests := []struct {
		file    string
		rows    []Row
		rowErrs []rowErr
		fatal   string // substring of the whole message, incl. file:line
	}{
		{
			file: "good.csv",
			rows: []Row{
				{Line: 2, Email: "alice@example.com", Name: "Alice Liddell", Locale: "de-AT", Extra: map[string]string{"company": "ACME"}},
				{Line: 3, Email: "bob@example.org", Name: "Bob, Jr.", Locale: "en-US", Extra: map[string]string{"company": ""}},
				{Line: 5, Email: "carol@xn--bcher-kva.example", Name: "Carol", Locale: "", Extra: map[string]string{"company": "Bücher GmbH"}},
			},
		},
		{
			file: "bom_crlf.csv",
			rows: []Row{
				{Line: 2, Email: "ann@example.com", Name: "Ann"},
				{Line: 3, Email: "ben@example.com", Name: "Ben"},
			},
		},
		{file: "empty.csv", fatal: "empty.csv:1: no header row"},
		{file: "no_email.csv", fatal: `no_email.csv:1: no "email" column; found "mail", "name", "e-mail"`},
		{file: "semicolon.csv", fatal: "semicolon.csv:1: the header looks like ';'-separated; use commas"},
		{file: "tab.csv", fatal: "tab.csv:1: the header looks like tab-separated; use commas"},
		{file: "dup_header.csv", fatal: `dup_header.csv:1: duplicate column "email" (columns 1 and 3)`},
		{
			file: "field_count.csv",
			rows: []Row{
				{Line: 2, Email: "ann@example.com", Name: "Ann"},
				{Line: 5, Email: "dora@example.com", Name: "Dora"},
			},
			rowErrs: []rowErr{
				{3, "3 fields, but the header has 2"},
				{4, "1 fields, but the header has 2"},
			},
		},
		{
			file: "bad_utf8.csv",
			rows: []Row{
				{Line: 2, Email: "ann@example.com", Name: "Ann"},
				{Line: 4, Email: "cid@example.com", Name: "Cid"},
			},
			rowErrs: []rowErr{{3, "column 2 is not valid UTF-8"}},
		},
		{
			file: "bad_address.csv",
			rows: []Row{{Line: 5, Email: "ok@example.com", Name: "OK"}},
			rowErrs: []rowErr{
				{2, `invalid address "foo@": missing the domain`},
				{3, `invalid address "Ann <ann@example.com>": give the bare address`},
				{4, "empty address"},
				{6, `invalid address "bad@@example.com"`},
			},
		},
		{
			file:    "quotes.csv",
			rows:    []Row{{Line: 3, Email: "ben@example.com", Name: "Ben Smith"}},
			rowErrs: []rowErr{{2, `character 21: a " in an unquoted field`}},
		},
		{
			file:  "unclosed_quote.csv",
			rows:  []Row{{Line: 2, Email: "ann@example.com", Name: "Ann"}},
			fatal: "unclosed_quote.csv:3: a quoted field opened on this line runs to line",
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rows, rowErrs, fatal := readAll(t, f, tt.file)
			if !reflect.DeepEqual(rows, tt.rows) {
				t.Errorf("rows:\n got %+v\nwant %+v", rows, tt.rows)
			}
			if len(rowErrs) != len(tt.rowErrs) {
				t.Errorf("row errors: got %v, want %d", rowErrs, len(tt.rowErrs))
			}
			for i := 0; i < len(rowErrs) && i < len(tt.rowErrs); i++ {
				got, want := rowErrs[i], tt.rowErrs[i]
				prefix := fmt.Sprintf("%s:%d: ", tt.file, want.line)
				if got.Line != want.line || !strings.HasPrefix(got.Error(), prefix) || !strings.Contains(got.Error(), want.msg) {
					t.Errorf("row error %d = %q, want %q…%q", i, got.Error(), prefix, want.msg)
				}
			}
			switch {
			case tt.fatal == "" && fatal != nil:
				t.Errorf("unexpected fatal error: %v", fatal)
			case tt.fatal != "" && fatal == nil:
				t.Errorf("no fatal error, want %q", tt.fatal)
			case fatal != nil:
				if !strings.Contains(fatal.Error(), tt.fatal) {
					t.Errorf("fatal error %q, want it to contain %q", fatal, tt.fatal)
				}
				if code := repermit.ErrorCode(fatal); code != repermit.EINVALID {
					t.Errorf("fatal error code %q, want %q", code, repermit.EINVALID)
				}
			}
		})
	}
}

func TestReaderLongLine(t *testing.T) {
	tests := []struct {
		name  string
		input string
		fatal string
	}{
		{
			name:  "one long line",
			input: "email,name\nann@example.com,Ann\nben@example.com," + strings.Repeat("x", MaxLineBytes+1) + "\ncid@example.com,Cid\n",
			fatal: "big.csv:3: line is longer than 1 MB",
		},
		{
			name:  "long header without newline",
			input: "email," + strings.Repeat("x", 2*MaxLineBytes),
			fatal: "big.csv:1: line is longer than 1 MB",
		},
		{
			name:  "quote left open over many short lines",
			input: "email,name\nann@example.com,\"Ann\n" + strings.Repeat("cid@example.com,Cid\n", MaxLineBytes/10),
			fatal: "row is longer than 1 MB",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, fatal := readAll(t, strings.NewReader(tt.input), "big.csv")
			if fatal == nil || !strings.Contains(fatal.Error(), tt.fatal) {
				t.Fatalf("fatal error %v, want %q", fatal, tt.fatal)
			}
			if repermit.ErrorCode(fatal) != repermit.EINVALID {
				t.Errorf("code %q, want EINVALID", repermit.ErrorCode(fatal))
			}
		})
	}
}

// TestReaderAcceptsLineAtLimit guards against an off-by-one that would turn
// a legitimate long row into a fatal error.
func TestReaderAcceptsLineAtLimit(t *testing.T) {
	pad := MaxLineBytes - len("ann@example.com,")
	input := "email,name\nann@example.com," + strings.Repeat("x", pad) + "\nben@example.com,Ben\n"
	rows, rowErrs, fatal := readAll(t, strings.NewReader(input), "big.csv")
	if fatal != nil || len(rowErrs) != 0 || len(rows) != 2 {
		t.Fatalf("got %d rows, row errors %v, fatal %v; want 2 rows", len(rows), rowErrs, fatal)
	}
	if len(rows[0].Name) != pad {
		t.Errorf("name has %d bytes, want %d", len(rows[0].Name), pad)
	}
}

// TestReaderStreams proves the reader never needs the whole input: it
// returns the first row before the input has ended.
func TestReaderStreams(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() {
		io.WriteString(pw, "email\nann@example.com\n")
		// The writer blocks here until the test is done; a reader that
		// read to EOF first would hang.
	}()
	rd, err := NewReader(pr, "pipe.csv")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan Row)
	go func() {
		row, _ := rd.Next()
		done <- row
	}()
	if row := <-done; row.Email != "ann@example.com" {
		t.Fatalf("first row %+v", row)
	}
	pw.Close()
}

func TestExampleRecipients(t *testing.T) {
	f, err := os.Open("../config/examples/recipients.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, rowErrs, fatal := readAll(t, f, "recipients.csv")
	if fatal != nil {
		t.Fatal(fatal)
	}
	if len(rowErrs) != 1 {
		t.Errorf("row errors %v, want exactly one", rowErrs)
	}
	seen := map[string]int{}
	for _, r := range rows {
		seen[r.Email]++
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	if len(rows) < 18 || dups != 1 {
		t.Errorf("%d rows with %d duplicates, want ≥18 rows and exactly one duplicate", len(rows), dups)
	}
}

func BenchmarkReader(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteString("email,name,locale\n")
	const n = 100_000
	for i := range n {
		fmt.Fprintf(&buf, "User.%d@Example%d.com,User %d,de-AT\n", i, i%100, i)
	}
	input := buf.Bytes()
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rd, err := NewReader(bytes.NewReader(input), "bench.csv")
		if err != nil {
			b.Fatal(err)
		}
		rows := 0
		for {
			_, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			rows++
		}
		if rows != n {
			b.Fatalf("read %d rows, want %d", rows, n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
