package config

import (
	"fmt"
	"strings"

	"github.com/repermit/repermit"
)

// Problem is one error at a place in a file.
type Problem struct {
	File string // as the caller named it
	Line int    // 1-based; 0 for the file as a whole
	Msg  string
}

// String returns "FILE:LINE: message", or "FILE: message" for line 0, the
// form editors and CI annotations jump to.
func (p Problem) String() string {
	if p.Line == 0 {
		return p.File + ": " + p.Msg
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
}

// Problems lists every problem found in a file, sorted by line, so that one
// run of validate reports them all.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap makes repermit.ErrorCode report EINVALID for Problems.
func (ps Problems) Unwrap() error {
	return repermit.Errorf(repermit.EINVALID, "%s", ps.Error())
}
