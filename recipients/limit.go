package recipients

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// MaxLineBytes is the longest physical line, and about the longest row,
// accepted in a recipients or suppression file. Without it one line without
// a newline, or a quote left open, would make encoding/csv buffer the rest
// of a file of any size.
const MaxLineBytes = 1 << 20

// recordSlack covers what encoding/csv reads ahead of the row it returns
// (its bufio buffer), so that the row limit never fires early.
const recordSlack = 64 << 10

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// errTooLong is returned by lineLimiter when a line or a row is too long.
type errTooLong struct {
	line int
	row  bool
}

func (e *errTooLong) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.reason()) }

func (e *errTooLong) reason() string {
	if e.row {
		return "row is longer than 1 MB (a quote left open?)"
	}
	return "line is longer than 1 MB"
}

// lineLimiter passes input through, counting physical lines, and fails
// once a line, or the bytes since the last rowDone, exceed the limits.
type lineLimiter struct {
	r       io.Reader
	maxLine int
	maxRow  int
	line    int // current physical line, 1-based
	lineLen int
	rowLen  int
	err     error
}

// newLineLimiter drops a leading UTF-8 byte order mark, which spreadsheet
// programs write and which would otherwise become part of the first column
// name.
func newLineLimiter(r io.Reader, maxLine int) *lineLimiter {
	br := bufio.NewReader(r)
	if b, err := br.Peek(len(utf8BOM)); err == nil && bytes.Equal(b, utf8BOM) {
		br.Discard(len(utf8BOM))
	}
	return &lineLimiter{r: br, maxLine: maxLine, maxRow: maxLine + recordSlack, line: 1}
}

func (l *lineLimiter) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	for rest := p[:n]; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			l.lineLen += len(rest)
			l.rowLen += len(rest)
			break
		}
		l.lineLen += i
		l.rowLen += i + 1
		if l.lineLen > l.maxLine {
			break
		}
		l.line++
		l.lineLen = 0
		rest = rest[i+1:]
	}
	switch {
	case l.lineLen > l.maxLine:
		l.err = &errTooLong{line: l.line}
	case l.rowLen > l.maxRow:
		l.err = &errTooLong{line: l.line, row: true}
	}
	if l.err != nil {
		return 0, l.err
	}
	return n, err
}

// rowDone tells the limiter that the consumer has finished a row.
func (l *lineLimiter) rowDone() { l.rowLen = 0 }
