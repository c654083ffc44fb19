package consentlog_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/repermit/repermit/consentlog"
)

// TestSubjectsAgreeWithSubject: the subjects kept per key are Subject's,
// whatever the address and the key, and from goroutines at once.
func TestSubjectsAgreeWithSubject(t *testing.T) {
	addrs := []string{
		"", "a@b.example", "anna.mueller@gmail.com", "ünïcødé@bücher.example",
		strings.Repeat("long.local.part.", 8) + "@example.com", "\x00\xff",
	}
	for _, key := range [][]byte{
		[]byte(strings.Repeat("k", 32)),
		{0x01, 0x02},
		[]byte(strings.Repeat("0123456789", 10)), // longer than a block
	} {
		subjects := consentlog.NewSubjects(key)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for _, a := range addrs {
					want, _ := consentlog.Subject(key, a)
					if got := subjects.Of(a); got != want {
						t.Errorf("key %q, address %q: Of %s, Subject %s", key, a, got, want)
					}
				}
			})
		}
		wg.Wait()
	}
}
