package export

import (
	"bufio"
	"io"
	"strings"

	"github.com/repermit/repermit"
)

// CSVWriter writes CSV for people who open it in a spreadsheet, neutralised
// against formula injection as OWASP's "CSV Injection" page describes:
// every cell is wrapped in double quotes (inner quotes doubled, so a
// spreadsheet that splits at ';' or a tab cannot cut a cell in two), and a
// cell that a spreadsheet could read as a formula gets a leading single
// quote, which Excel, LibreOffice and Google Sheets take as "this is text"
// (repermit.QuoteFormula).
// Rows end in CRLF as RFC 4180 has them.
//
// The quote changes the data: a cell "'=1+1" in the file stands for the
// text "=1+1". A program that reads the export and needs the original
// strips one leading quote from cells that then start like a formula
// (repermit.UnquoteFormula); repermit's recipients reader does, so the
// unreached export goes into a later campaign unchanged.
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
		c.w.WriteString(strings.ReplaceAll(repermit.QuoteFormula(cell), `"`, `""`))
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
