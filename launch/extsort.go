package launch

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// sortBudget is how many bytes a sorter's records (with 32 bytes of
// bookkeeping each) take in memory before it writes them, sorted, to a run
// file. Launch memory stays flat in the
// list size because of it: a 10M-row list costs disk, not RSS.
const sortBudget = 8 << 20

// sorter is an external merge sort of byte records, ordered by
// bytes.Compare of the whole record. Records are appended in memory up to
// a budget, then each full buffer is sorted and written to a temporary run
// file; Sorted merges the runs. Callers put the sort key first and make
// records unique (a row number after the key), so no order is left to
// chance.
type sorter struct {
	dir    string // where run files go
	budget int
	buf    []byte // records back to back
	starts []int  // where each record in buf begins
	recs   [][]byte
	runs   []*os.File
}

func newSorter(dir string, budget int) *sorter {
	return &sorter{dir: dir, budget: budget}
}

// Add copies rec into the sorter.
func (s *sorter) Add(rec []byte) error {
	// Each record also costs its start (8 bytes) and, while sorting, a
	// slice header (24).
	if len(s.buf)+len(rec)+32*(len(s.starts)+1) > s.budget && len(s.starts) > 0 {
		if err := s.spill(); err != nil {
			return err
		}
	}
	if s.buf == nil {
		// Sized once, so that append never doubles it past the budget;
		// the pages cost memory only once written.
		s.buf = make([]byte, 0, s.budget)
	}
	s.starts = append(s.starts, len(s.buf))
	s.buf = append(s.buf, rec...)
	return nil
}

func (s *sorter) record(i int) []byte {
	end := len(s.buf)
	if i+1 < len(s.starts) {
		end = s.starts[i+1]
	}
	return s.buf[s.starts[i]:end]
}

// sortBuffer orders the records held in memory and returns them.
func (s *sorter) sortBuffer() [][]byte {
	s.recs = s.recs[:0]
	for i := range s.starts {
		s.recs = append(s.recs, s.record(i))
	}
	slices.SortFunc(s.recs, bytes.Compare)
	return s.recs
}

// spill writes the sorted buffer to a new run file, each record as its
// length (uvarint) and its bytes.
func (s *sorter) spill() error {
	f, err := os.CreateTemp(s.dir, "run-*")
	if err != nil {
		return fmt.Errorf("sort: %w", err)
	}
	s.runs = append(s.runs, f)
	w := bufio.NewWriterSize(f, 1<<16)
	var n [binary.MaxVarintLen64]byte
	for _, r := range s.sortBuffer() {
		w.Write(n[:binary.PutUvarint(n[:], uint64(len(r)))])
		w.Write(r)
	}
	// bufio keeps the first write error; Flush reports it.
	if err := w.Flush(); err != nil {
		return fmt.Errorf("sort: write %s: %w", f.Name(), err)
	}
	s.buf, s.starts = s.buf[:0], s.starts[:0]
	return nil
}

// Sorted returns the records in order. The sorter takes no more records.
func (s *sorter) Sorted() (*merge, error) {
	m := &merge{}
	if len(s.runs) == 0 {
		// Everything fit in memory: no file is written.
		m.mem = s.sortBuffer()
		return m, nil
	}
	if len(s.starts) > 0 {
		if err := s.spill(); err != nil {
			return nil, err
		}
	}
	s.buf, s.starts, s.recs = nil, nil, nil
	for _, f := range s.runs {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("sort: %w", err)
		}
		r := &run{r: bufio.NewReaderSize(f, 1<<16)}
		ok, err := r.next()
		if err != nil {
			return nil, err
		}
		if ok {
			m.h = append(m.h, r)
		}
	}
	heap.Init(&m.h)
	return m, nil
}

// Close removes the run files.
func (s *sorter) Close() error {
	var errs []error
	for _, f := range s.runs {
		errs = append(errs, f.Close(), os.Remove(f.Name()))
	}
	s.runs, s.buf, s.starts, s.recs = nil, nil, nil, nil
	return errors.Join(errs...)
}

// merge yields a sorter's records in order.
type merge struct {
	mem [][]byte // the records when no run was written
	h   runHeap
	cur []byte
}

// Next returns the next record, or io.EOF after the last. The record is
// valid until the next call.
func (m *merge) Next() ([]byte, error) {
	if m.h == nil {
		if len(m.mem) == 0 {
			return nil, io.EOF
		}
		r := m.mem[0]
		m.mem = m.mem[1:]
		return r, nil
	}
	if len(m.h) == 0 {
		return nil, io.EOF
	}
	top := m.h[0]
	m.cur = append(m.cur[:0], top.rec...)
	ok, err := top.next()
	if err != nil {
		return nil, err
	}
	if ok {
		heap.Fix(&m.h, 0)
	} else {
		heap.Pop(&m.h)
	}
	return m.cur, nil
}

// run reads one run file.
type run struct {
	r   *bufio.Reader
	rec []byte
}

func (r *run) next() (bool, error) {
	n, err := binary.ReadUvarint(r.r)
	if err == io.EOF {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sort: read run: %w", err)
	}
	r.rec = slices.Grow(r.rec[:0], int(n))[:n]
	if _, err := io.ReadFull(r.r, r.rec); err != nil {
		return false, fmt.Errorf("sort: read run: %w", err)
	}
	return true, nil
}

type runHeap []*run

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return bytes.Compare(h[i].rec, h[j].rec) < 0 }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*run)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
