package repermit_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/repermit/repermit"
)

func TestScrubAddressesRemovesEveryAddressAndKeepsTheRest(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"550 5.1.1 <a.b+c@example.com>: no such user", "550 5.1.1 <<address>>: no such user"},
		{`554 "5.7.1 Message to <r0@x.example> rejected: r0@x.example", affected recipient(s): r0@x.example`, `554 "5.7.1 Message to <<address>> rejected: <address>", affected recipient(s): <address>`},
		{"RCPT TO:<jürgen@bücher.example> refused", "RCPT TO:<<address>> refused"},
		{"451 4.3.0 try again later", "451 4.3.0 try again later"},
		{"", ""},
	} {
		if got := repermit.ScrubAddresses(tc.in); got != tc.want {
			t.Errorf("ScrubAddresses(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	sentinel := errors.New("skip retry")
	err := repermit.Scrub(fmt.Errorf("send: 550 <a@example.com>: %w", sentinel))
	if !errors.Is(err, sentinel) || err.Error() != "send: 550 <<address>>: skip retry" {
		t.Errorf("Scrub = %q (is sentinel: %v)", err, errors.Is(err, sentinel))
	}
	if repermit.Scrub(nil) != nil {
		t.Error("Scrub(nil) is not nil")
	}
}
