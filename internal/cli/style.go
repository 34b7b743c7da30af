package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tasker-systems/tasker"
)

// isTerminal reports whether w is a character device (a terminal). TERM=dumb
// counts as not a terminal, since it cannot move the cursor.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	return fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

// useColor reports whether to colour output written to w: a terminal, and
// NO_COLOR unset (https://no-color.org).
func useColor(w io.Writer) bool {
	return isTerminal(w) && os.Getenv("NO_COLOR") == ""
}

// ANSI styles.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiBlue   = "\x1b[34m"
	ansiCyan   = "\x1b[36m"
)

// painter colours text when enabled.
type painter bool

func (p painter) paint(style, s string) string {
	if !p || style == "" || s == "" {
		return s
	}
	return style + s + ansiReset
}

// stepStyle returns the marker and colour of a step state.
func stepStyle(s tasker.StepState) (marker, style string) {
	switch s {
	case "complete":
		return "✓", ansiGreen
	case "resolved_manually":
		return "✓", ansiBlue
	case "error":
		return "✗", ansiRed
	case "in_progress":
		return "▶", ansiCyan
	case "waiting_for_retry":
		return "↻", ansiYellow
	case "cancelled":
		return "⊘", ansiDim
	case "skipped":
		return "↷", ansiDim
	}
	return "·", ansiDim
}

// taskStyle returns the colour of a task state.
func taskStyle(s tasker.TaskState) string {
	switch s {
	case "complete":
		return ansiGreen
	case "resolved_manually":
		return ansiBlue
	case "error", "blocked":
		return ansiRed
	case "in_progress":
		return ansiCyan
	case "waiting_for_retry":
		return ansiYellow
	}
	return ansiDim
}

// fmtDuration renders a duration for humans: 12ms, 1.52s, 3m05s.
func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
		fallthrough
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return d.Round(time.Second).String()
}

// truncate cuts s to at most n runes, ending with "…" when cut.
func truncate(s string, n int) string {
	s = oneLine(s)
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	if n == 1 {
		return "…"
	}
	return string(r[:n-1]) + "…"
}

// pad right-pads s with spaces to n runes.
func pad(s string, n int) string {
	if k := utf8.RuneCountInString(s); k < n {
		return s + strings.Repeat(" ", n-k)
	}
	return s
}

// terminalWidth guesses the terminal width from $COLUMNS (default 100).
func terminalWidth() int {
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n >= 40 {
		return n
	}
	return 100
}
