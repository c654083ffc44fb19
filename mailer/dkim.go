package mailer

import (
	"bytes"
	"crypto"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIMHeaders are the header fields every signature covers. RFC 8058
// section 4 requires List-Unsubscribe and List-Unsubscribe-Post among
// them for one-click unsubscribe to be honoured.
var DKIMHeaders = []string{
	"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
	"List-Unsubscribe", "List-Unsubscribe-Post",
}

// dkimSigner signs with github.com/emersion/go-msgauth/dkim instead of
// go-mail's own signer: go-mail v0.8.1 folds the DKIM-Signature header in
// the middle of a header name once h= is long ("List-Unsubscrib\r\n e"),
// and every verifier then rejects the mail. go-msgauth folds only between
// tags and list items.
type dkimSigner struct {
	domain, selector string
	key              crypto.Signer
}

func newDKIMSigner(domain, selector string, key crypto.Signer) (*dkimSigner, error) {
	s := &dkimSigner{domain: domain, selector: selector, key: key}
	// A signature over a minimal message proves the key type is usable
	// before the first mail, not at it.
	if _, err := s.signature(strings.NewReader("From: a@b.invalid\r\n\r\n")); err != nil {
		return nil, err
	}
	return s, nil
}

// signature returns the DKIM-Signature header field, folded, with its
// trailing CRLF, for the message read from r.
func (s *dkimSigner) signature(r io.Reader) (string, error) {
	// relaxed/relaxed survives relays that rewrite whitespace or refold
	// headers; simple/simple (go-msgauth's default) does not.
	signer, err := dkim.NewSigner(&dkim.SignOptions{
		Domain:                 s.domain,
		Selector:               s.selector,
		Signer:                 s.key,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             DKIMHeaders,
	})
	if err != nil {
		return "", fmt.Errorf("DKIM: %w", err)
	}
	if _, err := io.Copy(signer, r); err != nil {
		signer.Close()
		return "", fmt.Errorf("DKIM: %w", err)
	}
	if err := signer.Close(); err != nil {
		return "", fmt.Errorf("DKIM: %w", err)
	}
	return signer.Signature(), nil
}

// sign returns data with a DKIM-Signature header field in front. The
// signature covers exactly the bytes sent, and keeps go-msgauth's folding.
func (s *dkimSigner) sign(data []byte) ([]byte, error) {
	sig, err := s.signature(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if name, _, ok := strings.Cut(sig, ":"); !ok || !strings.EqualFold(name, "DKIM-Signature") {
		return nil, fmt.Errorf("DKIM: unexpected signature header %q", sig)
	}
	out := make([]byte, 0, len(sig)+len(data))
	return append(append(out, sig...), data...), nil
}
