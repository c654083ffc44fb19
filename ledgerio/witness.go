package ledgerio

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/repermit/repermit"
	"github.com/repermit/repermit/consentlog"
)

// Witness is where signed checkpoints are sent so that a copy lives
// somewhere the operator does not control alone: a file (on a mount
// another party keeps, or shipped off by log forwarding), or an HTTP(S)
// URL that receives each checkpoint as a POST. Either gets the line
// {"checkpoint":"…"} that `verify-ledger --witness` reads.
type Witness struct {
	target string
	client *http.Client
}

// NewWitness reads a target: an http:// or https:// URL, or a file path.
func NewWitness(target string) (*Witness, error) {
	if target == "" {
		return nil, nil
	}
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		u, err := url.Parse(target)
		if err != nil || u.Host == "" {
			return nil, repermit.Errorf(repermit.EINVALID, "witness URL %q: not a URL with a host", target)
		}
	}
	return &Witness{target: target, client: &http.Client{Timeout: 30 * time.Second}}, nil
}

// String names the target without URL credentials.
func (w *Witness) String() string {
	if u, err := url.Parse(w.target); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	return w.target
}

// Publish sends one signed checkpoint.
func (w *Witness) Publish(ctx context.Context, signed string) error {
	line, err := json.Marshal(consentlog.CheckpointLine{Checkpoint: signed})
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if strings.HasPrefix(w.target, "http://") || strings.HasPrefix(w.target, "https://") {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.target, bytes.NewReader(line))
		if err != nil {
			return fmt.Errorf("witness %s: %w", w, err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := w.client.Do(req)
		if err != nil {
			return fmt.Errorf("witness %s: %w", w, err)
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("witness %s: HTTP %s", w, resp.Status)
		}
		return nil
	}
	f, err := os.OpenFile(w.target, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("witness: %w", err)
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return fmt.Errorf("witness: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("witness: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("witness: %w", err)
	}
	return nil
}
