package cli

import (
	"io"
	"strings"
	"unicode/utf8"
)

// table is a plain-text table whose cells may be coloured: widths are
// measured on the text, colour is applied after padding.
type table struct {
	header []string
	rows   [][]string
	styles [][]string // per cell ANSI style, "" for none
}

func newTable(header ...string) *table { return &table{header: header} }

// add appends a row; styles (optional) colour its cells.
func (t *table) add(cells []string, styles ...string) {
	t.rows = append(t.rows, cells)
	t.styles = append(t.styles, styles)
}

// write renders the table with two spaces between columns; the last column
// is not padded.
func (t *table) write(w io.Writer, p painter) error {
	widths := make([]int, len(t.header))
	measure := func(cells []string) {
		for i, c := range cells {
			if i < len(widths) {
				widths[i] = max(widths[i], utf8.RuneCountInString(c))
			}
		}
	}
	measure(t.header)
	for _, r := range t.rows {
		measure(r)
	}
	var b strings.Builder
	line := func(cells, styles []string) {
		for i, c := range cells {
			if i > 0 {
				b.WriteString("  ")
			}
			text := c
			if i < len(cells)-1 {
				text = pad(c, widths[i])
			}
			style := ""
			if i < len(styles) {
				style = styles[i]
			}
			b.WriteString(p.paint(style, text))
		}
		// Trailing spaces of an empty last cell are not worth keeping.
		s := strings.TrimRight(b.String(), " ")
		b.Reset()
		b.WriteString(s)
		b.WriteByte('\n')
		_, _ = io.WriteString(w, b.String())
		b.Reset()
	}
	line(t.header, nil)
	for i, r := range t.rows {
		line(r, t.styles[i])
	}
	return nil
}
