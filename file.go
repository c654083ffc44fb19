package repermit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// ErrNotRegular is the error of OpenFile for a path that is not a regular
// file.
var ErrNotRegular = errors.New("not a regular file")

// OpenFile opens path for reading and refuses anything that is not a
// regular file (after symlinks): reading a FIFO waits for a writer that may
// never come, and a device may never end. It opens without blocking, so a
// FIFO is refused at once instead of hanging in open(2), and checks the
// opened file, not the name, so nothing can be swapped in between. Errors
// are *os.PathError.
func OpenFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w (%s)", ErrNotRegular, describeMode(fi.Mode()))}
	}
	return f, nil
}

// ReadFile reads the whole of path as OpenFile opens it: a FIFO, a
// device or a directory is refused at once instead of blocking the read.
func ReadFile(path string) ([]byte, error) {
	f, err := OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

func describeMode(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	default:
		return "mode " + m.String()
	}
}
