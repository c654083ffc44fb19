package export

import (
	"bufio"
	"io"
	"strings"
	"unicode/utf8"
)

// CSVWriter writes CSV for people who open it in a spreadsheet, neutralised
// against formula injection as OWASP's "CSV Injection" page describes:
// every cell is wrapped in double quotes (inner quotes doubled, so a
// spreadsheet that splits at ';' or a tab cannot cut a cell in two), and a
// cell that a spreadsheet could read as a formula gets a leading single
// quote, which Excel, LibreOffice and Google Sheets take as "this is text".
// Rows end in CRLF as RFC 4180 has them.
//
// The quote changes the data: a cell "'=1+1" in the file stands for the
// text "=1+1". A program that reads the export and needs the original
// strips one leading quote from cells that then start like a formula.
type CSVWriter struct {
	w   *bufio.Writer
	err error
}

// NewCSVWriter returns a CSVWriter writing to w. Call Flush at the end.
func NewCSVWriter(w io.Writer) *CSVWriter {
	return &CSVWriter{w: bufio.NewWriter(w)}
}

// Write writes one row.
func (c *CSVWriter) Write(row []string) error {
	if c.err != nil {
		return c.err
	}
	for i, cell := range row {
		if i > 0 {
			c.w.WriteByte(',')
		}
		c.w.WriteByte('"')
		if formulaic(cell) {
			c.w.WriteByte('\'')
		}
		c.w.WriteString(strings.ReplaceAll(cell, `"`, `""`))
		_, c.err = c.w.WriteString("\"")
	}
	if c.err == nil {
		_, c.err = c.w.WriteString("\r\n")
	}
	return c.err
}

// Flush writes what is buffered and returns the first error.
func (c *CSVWriter) Flush() error {
	if c.err != nil {
		return c.err
	}
	c.err = c.w.Flush()
	return c.err
}

// formulaChars start a formula (=, +, -, @), or are dropped by a
// spreadsheet in front of one (tab, CR, LF, NUL). The full-width forms are
// formula starters in East Asian locales of Excel.
const formulaChars = "=+-@\t\r\n\x00＝＋－＠"

// formulaic reports whether a spreadsheet could take cell for a formula:
// it starts with one of formulaChars, also after leading blanks (some
// importers trim them).
func formulaic(cell string) bool {
	if cell == "" {
		return false
	}
	if r, _ := utf8.DecodeRuneInString(cell); strings.ContainsRune(formulaChars, r) {
		return true
	}
	rest := strings.TrimLeft(cell, " \t\r\n\u00a0\u3000")
	if rest == "" {
		return false
	}
	r, _ := utf8.DecodeRuneInString(rest)
	return strings.ContainsRune(formulaChars, r)
}
