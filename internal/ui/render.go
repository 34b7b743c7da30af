package ui

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-systems/tasker/taskertype"
)

// pageNames are the page templates; each is parsed with layout.html.
var pageNames = []string{"overview", "tasks", "task", "confirm", "templates", "template", "login", "error"}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

var funcs = template.FuncMap{
	"time":     fmtTime,
	"ago":      ago,
	"dur":      fmtDuration,
	"json":     prettyJSON,
	"errdoc":   errorDoc,
	"percent":  percent,
	"scale":    scale,
	"add":      func(a, b int) int { return a + b },
	"sub":      func(a, b int) int { return a - b },
	"mul":      func(a, b int) int { return a * b },
	"comma":    comma,
	"taskURL":  taskURL,
	"stateURL": stateURL,
	"terminal": func(s string) bool { return taskertype.TaskState(s).Terminal() },
	"strs":     func(v any) []string { return toStrings(v) },
	"join":     strings.Join,
	"minute":   func(t time.Time) string { return t.Format("15:04") },
}

func fmtTime(v any) string {
	switch t := v.(type) {
	case time.Time:
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	case *time.Time:
		if t == nil {
			return ""
		}
		return fmtTime(*t)
	}
	return ""
}

// ago says how long before now t was, roughly.
func ago(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x == nil {
			return ""
		}
		t = *x
	}
	if t.IsZero() {
		return ""
	}
	d := time.Since(t)
	if d < 0 {
		return "in " + fmtDuration(-d)
	}
	return fmtDuration(d) + " ago"
}

// fmtDuration prints a duration with two significant units at most.
func fmtDuration(v any) string {
	var d time.Duration
	switch x := v.(type) {
	case time.Duration:
		d = x
	case *time.Duration:
		if x == nil {
			return ""
		}
		d = *x
	}
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// prettyJSON indents a JSON document (raw bytes, string or any value).
func prettyJSON(v any) string {
	var raw []byte
	switch x := v.(type) {
	case json.RawMessage:
		raw = x
	case []byte:
		raw = x
	case string:
		raw = []byte(x)
	default:
		b, err := json.MarshalIndent(x, "", "  ")
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

// errorDoc decodes a step's error document; nil when there is none.
func errorDoc(raw json.RawMessage) map[string]any {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return map[string]any{"message": string(raw)}
	}
	return m
}

func toStrings(v any) []string {
	switch x := v.(type) {
	case []string:
		return x
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	case string:
		return strings.Split(x, "\n")
	}
	return nil
}

// percent is n of total in percent, at least 1 when n > 0.
func percent(n, total int) int {
	if total <= 0 || n <= 0 {
		return 0
	}
	return max(1, int(math.Round(100*float64(n)/float64(total))))
}

// scale maps n of max onto 0..h.
func scale(n, maxN, h int) int {
	if maxN <= 0 || n <= 0 {
		return 0
	}
	return max(1, n*h/maxN)
}

// comma writes 12345 as 12,345.
func comma(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + comma(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// taskURL links to a task page, optionally with a selected step.
func taskURL(id int64, step string) string {
	u := "/ui/tasks/" + strconv.FormatInt(id, 10)
	if step != "" {
		u += "?step=" + url.QueryEscape(step)
	}
	return u
}

// stateURL links to a task page's step table filtered by state and paged.
func stateURL(id int64, state string, page int) string {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if page > 1 {
		q.Set("page", strconv.Itoa(page))
	}
	u := "/ui/tasks/" + strconv.FormatInt(id, 10)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u + "#steps"
}

// taskTransitions reads a task's own audit trail in order.
func (d *db) taskTransitions(ctx context.Context, taskID int64) ([]*taskertype.Transition, error) {
	rs, err := d.sql.QueryContext(ctx, `SELECT id, from_state, to_state, event, reason, actor, metadata, sort_key, created_at
		FROM tasker_task_transitions WHERE task_id = $1 ORDER BY sort_key`, taskID)
	if err != nil {
		return nil, fmt.Errorf("transitions of task %d: %w", taskID, err)
	}
	defer rs.Close()
	var out []*taskertype.Transition
	for rs.Next() {
		tr := &taskertype.Transition{TaskID: taskID}
		var from sql.NullString
		var meta []byte
		var at nullTime
		if err := rs.Scan(&tr.ID, &from, &tr.ToState, &tr.Event, &tr.Reason, &tr.Actor, &meta, &tr.SortKey, &at); err != nil {
			return nil, err
		}
		tr.FromState, tr.Metadata, tr.CreatedAt = from.String, meta, at.T
		out = append(out, tr)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].SortKey > out[j].SortKey })
	return out, rs.Err()
}
