package repermit_test

import (
	"testing"

	"github.com/repermit/repermit"
)

func TestQuoteFormulaNeutralisesAndUnquoteFormulaGivesEveryCellBack(t *testing.T) {
	for _, tc := range []struct{ cell, quoted string }{
		{"", ""},
		{"Anna", "Anna"},
		{"=1+1", "'=1+1"},
		{"+49 30 1234", "'+49 30 1234"},
		{"-ann@example.com", "'-ann@example.com"},
		{"@SUM(A1)", "'@SUM(A1)"},
		{"\t=1+1", "'\t=1+1"},
		{" =1+1", "' =1+1"},
		{"\u00a0@x", "'\u00a0@x"},
		{"＝1+1", "'＝1+1"},
		{"a-b@example.com", "a-b@example.com"},
		{"O'Neill", "O'Neill"},
		{"'Neill", "'Neill"},
		{"'", "'"},
		{"''", "''"},
		// A spreadsheet eats one leading quote: a cell that is quotes and
		// a formula gets one more, so that it shows, and reads back, as
		// written.
		{"'=1+1", "''=1+1"},
		{"''-x", "'''-x"},
	} {
		if got := repermit.QuoteFormula(tc.cell); got != tc.quoted {
			t.Errorf("QuoteFormula(%q) = %q, want %q", tc.cell, got, tc.quoted)
		}
		if got := repermit.UnquoteFormula(tc.quoted); got != tc.cell {
			t.Errorf("UnquoteFormula(%q) = %q, want %q back", tc.quoted, got, tc.cell)
		}
		if repermit.LooksLikeFormula(tc.quoted) {
			t.Errorf("%q, written for %q, still looks like a formula", tc.quoted, tc.cell)
		}
	}
}
