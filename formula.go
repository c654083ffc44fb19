package repermit

import (
	"strings"
	"unicode/utf8"
)

// formulaChars start a formula (=, +, -, @), or are dropped by a
// spreadsheet in front of one (tab, CR, LF, NUL). The full-width forms are
// formula starters in East Asian locales of Excel.
const formulaChars = "=+-@\t\r\n\x00＝＋－＠"

// LooksLikeFormula reports whether a spreadsheet could take cell for a
// formula: it starts with one of =, +, -, @, a tab, CR, LF or NUL (or a
// full-width =, +, -, @), also after leading blanks (some importers trim
// them). See QuoteFormula.
func LooksLikeFormula(cell string) bool {
	if cell == "" {
		return false
	}
	if r, _ := utf8.DecodeRuneInString(cell); strings.ContainsRune(formulaChars, r) {
		return true
	}
	rest := strings.TrimLeft(cell, " \t\r\n\u00a0\u3000")
	if rest == "" {
		return false
	}
	r, _ := utf8.DecodeRuneInString(rest)
	return strings.ContainsRune(formulaChars, r)
}

// QuoteFormula neutralises a CSV cell as OWASP's "CSV Injection" page
// describes: a cell that LooksLikeFormula gets a leading ', which Excel,
// LibreOffice and Google Sheets take as "this is text" and do not show.
// A cell that already starts with ' gets one more when what follows its
// quotes looks like a formula, so that a spreadsheet, which eats one,
// shows the original, and UnquoteFormula gives every cell back exactly.
func QuoteFormula(cell string) string {
	if LooksLikeFormula(strings.TrimLeft(cell, "'")) {
		return "'" + cell
	}
	return cell
}

// UnquoteFormula undoes QuoteFormula: a cell that is a ' followed by (more
// quotes and) something that LooksLikeFormula loses that one '; any other
// cell is returned as it is. So a list exported by repermit (export --what
// unreached) or kept as text in a spreadsheet reads back as the original
// text: "'=1+1" is "=1+1", "'-x@example.com" is "-x@example.com", while
// "'Neill" and "O'Neill" stay.
func UnquoteFormula(cell string) string {
	if rest, ok := strings.CutPrefix(cell, "'"); ok && LooksLikeFormula(strings.TrimLeft(rest, "'")) {
		return rest
	}
	return cell
}
