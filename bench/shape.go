package bench

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// A Shape says what the generated recipient lists look like. Every bench
// writes its rows through one; the default, ShapeRealistic, is meant to
// look like an old marketing list, not like rows built to fit a threshold.
type Shape string

// The shapes -shape accepts.
const (
	// ShapeRealistic: names of real lengths (a tenth with a middle name, a
	// tenth with a compound surname, a tenth without a name), addresses
	// built from them the ways people build them (first.last, initials,
	// birth years, nicknames, role addresses of long company domains), 24
	// mailbox providers with a quarter of the list at gmail.com and the
	// rest spread over the others and over company domains, eight locales,
	// and three extra columns of which each row fills none to all three.
	ShapeRealistic Shape = "realistic"
	// ShapeMinimal: the same addresses without name, locale or any other
	// column, as an old newsletter export has them.
	ShapeMinimal Shape = "minimal"
	// ShapeWide: the realistic rows with every extra column filled, the
	// worst case of the realistic shape.
	ShapeWide Shape = "wide"
)

// Shapes lists the shapes in the order -shape's help names them.
var Shapes = []Shape{ShapeRealistic, ShapeMinimal, ShapeWide}

// ParseShape accepts a shape's name; "" is ShapeRealistic.
func ParseShape(s string) (Shape, error) {
	if s == "" {
		return ShapeRealistic, nil
	}
	for _, sh := range Shapes {
		if string(sh) == s {
			return sh, nil
		}
	}
	return "", fmt.Errorf("unknown shape %q; want one of %v", s, Shapes)
}

// extraColumns are the CSV columns beyond email, name and locale that the
// realistic and wide shapes write.
var extraColumns = []string{"customer_id", "source", "signup_date"}

// Row is one generated recipient.
type Row struct {
	Email, Name, Locale string
	// Extra holds the filled extra columns only (an empty cell is absent).
	Extra map[string]string
}

// weighted picks one of values with the given weights (percent or any
// other unit; they need not add up to 100).
type weighted struct {
	values []string
	cum    []int
}

func newWeighted(pairs ...any) weighted {
	var w weighted
	total := 0
	for i := 0; i < len(pairs); i += 2 {
		total += pairs[i+1].(int)
		w.values = append(w.values, pairs[i].(string))
		w.cum = append(w.cum, total)
	}
	return w
}

func (w weighted) pick(r *rand.Rand) string {
	n := r.IntN(w.cum[len(w.cum)-1])
	for i, c := range w.cum {
		if n < c {
			return w.values[i]
		}
	}
	return w.values[len(w.values)-1]
}

// The distribution. Weights are percent of rows.
var (
	// Mailbox providers, 76 % of the list; gmail.com is a quarter. The
	// other 24 % are company and small-provider domains made up per row.
	providers = newWeighted(
		"gmail.com", 25, "yahoo.com", 5, "hotmail.com", 5, "outlook.com", 4,
		"gmx.de", 4, "web.de", 4, "icloud.com", 3, "t-online.de", 3,
		"yahoo.co.uk", 2, "orange.fr", 2, "free.fr", 2, "libero.it", 2,
		"aol.com", 2, "live.com", 2, "gmx.at", 1, "gmx.net", 2,
		"btinternet.com", 1, "comcast.net", 1, "protonmail.com", 1,
		"mail.ru", 1, "hotmail.de", 1, "wanadoo.fr", 1, "telenet.be", 1,
		"company", 24,
	)
	companyWords = []string{"acme", "nordic", "solutions", "consulting", "maschinenbau", "logistics",
		"software", "partners", "immobilien", "holding", "digital", "systems", "medical", "group",
		"verlag", "handels", "energy", "international", "studio", "bau"}
	companyTLDs = newWeighted("com", 40, "de", 25, "co.uk", 8, "fr", 6, "at", 4, "nl", 5, "dk", 4, "it", 4, "eu", 4)

	locales = newWeighted("en", 40, "de", 22, "fr", 10, "de-AT", 5, "es", 6, "it", 6, "nl", 6, "da", 5)

	firstNames = []string{"Anna", "Max", "Sophie", "Lukas", "Marie", "Jonas", "Emma", "Paul",
		"Olivia", "James", "Charlotte", "William", "Léa", "Hugo", "Giulia", "Lorenzo", "Lucía",
		"Mateo", "Freja", "Magnus", "Sanne", "Daan", "Mohammed", "Aisha", "Wei", "Yuki",
		"Maximilian", "Alexandra", "Christopher", "Anna-Lena", "Jean-Baptiste", "Bartholomew",
		"Konstantinos", "Siobhán", "Evangeline", "Friedrich-Wilhelm", "Tom", "Eva", "Ole", "Ida"}
	lastNames = []string{"Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner",
		"Becker", "Smith", "Jones", "Williams", "Brown", "Martin", "Bernard", "Dubois", "Rossi",
		"Russo", "García", "Fernández", "Jensen", "Nielsen", "Hansen", "de Vries", "van den Berg",
		"Nguyen", "Kowalski", "O'Connor", "Papadopoulos", "Andersson", "Wójcik",
		"Hohenzollern-Sigmaringen", "Schwarzenberger", "Vandenbroucke", "Oberhollenzer",
		"Lindqvist", "Christodoulou", "Mac Giolla Phádraig", "Kim", "Li", "Ng"}
	sources = []string{"website", "newsletter-form", "tradefair-2016", "contest-summer-2019",
		"import-crm-2014", "shop-checkout", "partner-list", "webinar"}
)

// Generate returns row i of a list of the given shape. The same shape and
// index always give the same row, and no two indexes of one list give the
// same address (the index is part of every address).
func (sh Shape) Generate(i int) Row {
	r := rand.New(rand.NewPCG(uint64(i), 0x5eed))
	first := firstNames[r.IntN(len(firstNames))]
	last := lastNames[r.IntN(len(lastNames))]
	name := first + " " + last
	switch n := r.IntN(100); {
	case n < 10:
		name = first + " " + firstNames[r.IntN(len(firstNames))] + " " + last
	case n < 20:
		other := lastNames[r.IntN(len(lastNames))]
		last = last + "-" + other
		name = first + " " + last
	case n < 30:
		name = ""
	}
	email := address(r, first, last, i)
	row := Row{Email: email}
	if sh == ShapeMinimal {
		return row
	}
	row.Name = name
	row.Locale = locales.pick(r)
	for k, col := range extraColumns {
		fill := r.IntN(100) < []int{60, 45, 35}[k]
		if !fill && sh != ShapeWide {
			continue
		}
		if row.Extra == nil {
			row.Extra = make(map[string]string, len(extraColumns))
		}
		switch col {
		case "customer_id":
			row.Extra[col] = "C" + fmt.Sprintf("%08d", r.IntN(100000000))
		case "source":
			row.Extra[col] = sources[r.IntN(len(sources))]
		case "signup_date":
			row.Extra[col] = fmt.Sprintf("%04d-%02d-%02d", 2008+r.IntN(18), 1+r.IntN(12), 1+r.IntN(28))
		}
	}
	return row
}

// address builds a mailbox name from the person's name the ways people do,
// with the row index in it so that every row's address is unique.
func address(r *rand.Rand, first, last string, i int) string {
	f, l := ascii(first), ascii(last)
	n := strconv.Itoa(i)
	var local string
	switch k := r.IntN(100); {
	case k < 30:
		local = f + "." + l + "." + n
	case k < 40:
		local = f + l + n
	case k < 50:
		local = f[:1] + "." + l + n
	case k < 60:
		local = f + "_" + l + strconv.Itoa(1950+r.IntN(56)) + "." + n
	case k < 75:
		local = f + strconv.Itoa(1950+r.IntN(56)) + "x" + n
	case k < 85:
		local = l + "." + n
	default:
		// Role and department addresses of company lists.
		local = f + "." + l + "." + []string{"marketing", "einkauf", "office", "info", "sales-team"}[r.IntN(5)] + n
	}
	if len(local) > 64 {
		// RFC 5321's limit: people with long compound names shorten them.
		local = strings.TrimRight(local[:63-len(n)], "._-") + "." + n
	}
	domain := providers.pick(r)
	if domain == "company" {
		w1 := companyWords[r.IntN(len(companyWords))]
		w2 := companyWords[r.IntN(len(companyWords))]
		domain = w1 + "-" + w2 + "." + companyTLDs.pick(r)
		if r.IntN(4) == 0 {
			domain = "mail." + domain
		}
	}
	return local + "@" + domain
}

// ascii lower-cases s and spells it as people do in an address: no spaces
// or apostrophes, umlauts and accents transliterated.
func ascii(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		switch c {
		case 'ä':
			b.WriteString("ae")
		case 'ö':
			b.WriteString("oe")
		case 'ü':
			b.WriteString("ue")
		case 'é', 'è':
			b.WriteByte('e')
		case 'á':
			b.WriteByte('a')
		case 'í':
			b.WriteByte('i')
		case 'ó':
			b.WriteByte('o')
		case 'ø':
			b.WriteString("oe")
		case 'å':
			b.WriteString("aa")
		case ' ', '\'':
		default:
			if c < 0x80 {
				b.WriteRune(c)
			}
		}
	}
	return b.String()
}
