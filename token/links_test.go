package token

import (
	"strings"
	"testing"
	"time"
)

// TestLinksCarryTheirPurposeUnderTheRoutedPaths: the confirm link opens
// the confirm page and its token confirms; the unsubscribe link likewise.
func TestLinksCarryTheirPurposeUnderTheRoutedPaths(t *testing.T) {
	s := newSigner(t, "0123456789abcdef0123456789abcdef")
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	c := Claims{Purpose: Bounce, CampaignSeq: 7, Recipient: 42, Deadline: now.Add(time.Hour)}
	confirm, unsub := s.Links("https://consent.acme.example", c)
	for _, tt := range []struct {
		link, path string
		want       Purpose
	}{{confirm, ConfirmPath, Confirm}, {unsub, UnsubscribePath, Unsubscribe}} {
		tok, ok := strings.CutPrefix(tt.link, "https://consent.acme.example"+tt.path)
		if !ok {
			t.Errorf("link %q is not under %s", tt.link, tt.path)
			continue
		}
		got, err := s.Verify(tok, now)
		if err != nil || got.Purpose != tt.want || got.CampaignSeq != 7 || got.Recipient != 42 {
			t.Errorf("token of %q: %+v, %v; want purpose %v for recipient 42 of campaign 7", tt.link, got, err, tt.want)
		}
	}
}
