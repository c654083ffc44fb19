package recipients

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/repermit/repermit"
)

// LoadSuppression reads a suppression file and returns the set of address
// hashes (see Hash) it holds. The file is either one entry per line, or a
// CSV whose header has an "email" or "email_sha256" column; each entry is
// an address, normalized then hashed, or a hex SHA-256 of a normalized
// address. Lines starting with '#' and empty entries are skipped. Any bad
// entry is an EINVALID error naming file and line: a suppression list that
// is silently read in part would let the campaign mail people who must not
// be mailed.
func LoadSuppression(path string) (map[string]struct{}, error) {
	f, err := repermit.OpenFile(path)
	if err != nil {
		return nil, repermit.Errorf(repermit.EINVALID, "%s: cannot open suppression file: %v", path, unwrapPathError(err))
	}
	defer f.Close()
	return readSuppression(f, path)
}

func readSuppression(in io.Reader, name string) (map[string]struct{}, error) {
	lim := newLineLimiter(in, MaxLineBytes)
	cr := csv.NewReader(lim)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	cr.Comment = '#'
	rd := &Reader{name: name, lim: lim} // for its fatal-error messages

	set := make(map[string]struct{})
	// cols lists the columns holding entries; nil until the first record
	// decides between header-and-CSV and one entry per line.
	var cols []int
	first, plain := true, false
	for {
		rec, err := cr.Read()
		lim.rowDone()
		if err == io.EOF {
			return set, nil
		}
		if err != nil {
			return nil, rd.fatal(err)
		}
		line, _ := cr.FieldPos(0)
		if first {
			first = false
			for i, h := range rec {
				switch strings.ToLower(strings.TrimSpace(h)) {
				case "email", "email_sha256":
					cols = append(cols, i)
				}
			}
			if cols != nil {
				continue
			}
			cols = []int{0}
			plain = true
		}
		if plain && len(rec) > 1 {
			return nil, repermit.Errorf(repermit.EINVALID,
				"%s:%d: expected one entry per line, or a header row with an \"email\" or \"email_sha256\" column; found %d fields", name, line, len(rec))
		}
		for _, c := range cols {
			if c >= len(rec) {
				continue
			}
			// An address exported by repermit or kept as text in a
			// spreadsheet may carry a ' in front (see UnquoteFormula).
			v := strings.TrimSpace(repermit.UnquoteFormula(rec[c]))
			if v == "" {
				continue
			}
			h, err := suppressionHash(v)
			if err != nil {
				return nil, repermit.Errorf(repermit.EINVALID, "%s:%d: %s (expected an email address or a 64-digit hex SHA-256)", name, line, repermit.ErrorMessage(err))
			}
			set[h] = struct{}{}
		}
	}
}

func suppressionHash(v string) (string, error) {
	if isHash(v) {
		return strings.ToLower(v), nil
	}
	addr, err := Normalize(v)
	if err != nil {
		return "", err
	}
	return Hash(addr), nil
}

// unwrapPathError drops the path from an *os.PathError, which the caller's
// message already names.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
