// Package recipients reads recipient lists and suppression files and
// normalizes addresses. It streams: a file of any size is read one row at a
// time. Deduplication and suppression across rows are the importer's job.
package recipients

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/repermit/repermit"
)

// Row is one recipient read from a file.
type Row struct {
	Line   int    // line of the row in the file, 1-based
	Email  string // normalized
	Name   string
	Locale string // canonical BCP 47-like tag, or "" if absent or unusable
	// Extra holds the other named columns by lower-case header name; nil
	// if the file has none.
	Extra map[string]string
}

// RowError is a problem with one row; the reader continues after it.
type RowError struct {
	File   string
	Line   int
	Reason string
}

func (e *RowError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason) }

// Reader reads recipients from a CSV file with a header row that has an
// "email" column and optionally "name" and "locale".
type Reader struct {
	name   string
	lim    *lineLimiter
	csv    *csv.Reader
	ncols  int
	email  int
	rname  int // -1 if absent
	locale int // -1 if absent
	extra  []extraColumn
	err    error // sticky fatal error
}

type extraColumn struct {
	index int
	name  string
}

// NewReader reads and checks the header of a recipients file; name is used
// in messages. Problems with the file as a whole are EINVALID errors
// reading "name:LINE: message".
func NewReader(r io.Reader, name string) (*Reader, error) {
	lim := newLineLimiter(r, MaxLineBytes)
	cr := csv.NewReader(lim)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	rd := &Reader{name: name, lim: lim, csv: cr, rname: -1, locale: -1}

	header, err := cr.Read()
	lim.rowDone()
	if err == io.EOF {
		return nil, repermit.Errorf(repermit.EINVALID, "%s:1: no header row (the file is empty)", name)
	}
	if err != nil {
		return nil, rd.fatal(err)
	}
	line, _ := cr.FieldPos(0)
	fail := func(format string, args ...any) (*Reader, error) {
		return nil, repermit.Errorf(repermit.EINVALID, "%s:%d: %s", name, line, fmt.Sprintf(format, args...))
	}
	if len(header) == 1 {
		for _, sep := range []string{";", "\t", "|"} {
			if strings.Contains(header[0], sep) {
				return fail("the header looks like %s-separated; use commas", describeSep(sep))
			}
		}
	}

	rd.ncols = len(header)
	rd.email = -1
	seen := make(map[string]int, len(header))
	var found []string
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue // e.g. a trailing comma written by a spreadsheet
		}
		if !utf8.ValidString(h) {
			return fail("column %d: name is not valid UTF-8", i+1)
		}
		if j, dup := seen[h]; dup {
			return fail("duplicate column %q (columns %d and %d)", h, j+1, i+1)
		}
		seen[h] = i
		found = append(found, fmt.Sprintf("%q", h))
		switch h {
		case "email":
			rd.email = i
		case "name":
			rd.rname = i
		case "locale":
			rd.locale = i
		default:
			rd.extra = append(rd.extra, extraColumn{index: i, name: h})
		}
	}
	if rd.email < 0 {
		if len(found) == 0 {
			return fail(`no "email" column; the header row has no column names`)
		}
		return fail(`no "email" column; found %s`, strings.Join(found, ", "))
	}
	return rd, nil
}

func describeSep(sep string) string {
	switch sep {
	case "\t":
		return "tab"
	default:
		return fmt.Sprintf("'%s'", sep)
	}
}

// Next returns the next row. At the end it returns io.EOF. A bad row gives
// a *RowError: count it and call Next again. Any other error is fatal, an
// EINVALID error naming file and line, and is returned again by every
// further call.
func (r *Reader) Next() (Row, error) {
	if r.err != nil {
		return Row{}, r.err
	}
	rec, err := r.csv.Read()
	r.lim.rowDone()
	if err != nil {
		if err == io.EOF {
			return Row{}, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) && !(errors.Is(pe.Err, csv.ErrQuote) && pe.Line > pe.StartLine) {
			return Row{}, &RowError{File: r.name, Line: pe.StartLine, Reason: describeParseError(pe)}
		}
		r.err = r.fatal(err)
		return Row{}, r.err
	}
	line, _ := r.csv.FieldPos(0)
	if len(rec) != r.ncols {
		return Row{}, &RowError{File: r.name, Line: line,
			Reason: fmt.Sprintf("%d fields, but the header has %d (a comma inside an unquoted name?)", len(rec), r.ncols)}
	}
	for i, f := range rec {
		if !utf8.ValidString(f) {
			return Row{}, &RowError{File: r.name, Line: line,
				Reason: fmt.Sprintf("column %d is not valid UTF-8 (save the file as UTF-8)", i+1)}
		}
		// The ' that repermit's exports (and spreadsheet users) put in
		// front of a cell that starts like a formula is not part of it:
		// kept, it made "'-ann@example.com" of an unreached recipient
		// "-ann@example.com" in the next campaign.
		rec[i] = repermit.UnquoteFormula(f)
	}
	email, err := Normalize(rec[r.email])
	if err != nil {
		return Row{}, &RowError{File: r.name, Line: line, Reason: repermit.ErrorMessage(err)}
	}
	row := Row{Line: line, Email: email}
	if r.rname >= 0 {
		row.Name = strings.TrimSpace(rec[r.rname])
		// A name goes into a From-like header of the mail; a line break
		// kept in it is at best ugly.
		if strings.ContainsAny(row.Name, "\r\n\t") {
			row.Name = strings.Join(strings.Fields(row.Name), " ")
		}
	}
	if r.locale >= 0 {
		row.Locale = normalizeLocale(rec[r.locale])
	}
	if len(r.extra) > 0 {
		row.Extra = make(map[string]string, len(r.extra))
		for _, c := range r.extra {
			row.Extra[c.name] = rec[c.index]
		}
	}
	return row, nil
}

// fatal turns an error that stops reading into an EINVALID error naming the
// line.
func (r *Reader) fatal(err error) error {
	var tl *errTooLong
	if errors.As(err, &tl) {
		return repermit.Errorf(repermit.EINVALID, "%s:%d: %s", r.name, tl.line, tl.reason())
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, csv.ErrQuote) && pe.Line > pe.StartLine {
			return repermit.Errorf(repermit.EINVALID, "%s:%d: a quoted field opened on this line runs to line %d; close the quote or double it (\"\")", r.name, pe.StartLine, pe.Line)
		}
		return repermit.Errorf(repermit.EINVALID, "%s:%d: %s", r.name, pe.StartLine, describeParseError(pe))
	}
	return repermit.Errorf(repermit.EINVALID, "%s:%d: read: %v", r.name, r.lim.line, err)
}

func describeParseError(pe *csv.ParseError) string {
	switch {
	case errors.Is(pe.Err, csv.ErrBareQuote):
		return fmt.Sprintf("character %d: a \" in an unquoted field; quote the whole field and double the \"", pe.Column)
	case errors.Is(pe.Err, csv.ErrQuote):
		return fmt.Sprintf("character %d: extraneous or missing \" in a quoted field", pe.Column)
	}
	return pe.Err.Error()
}
