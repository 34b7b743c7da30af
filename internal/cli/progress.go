package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tasker-systems/tasker"
)

// progressMode selects how `tasker run` shows a task while it runs.
type progressMode int

const (
	// progressNone shows nothing (--json).
	progressNone progressMode = iota
	// progressPlain prints one line per step event (not a terminal).
	progressPlain
	// progressLive redraws a table of the steps in place (a terminal).
	progressLive
)

// progress shows a running task. Create it before the task runs, so that no
// event is missed, and call stop with the final state once it has ended.
type progress struct {
	c      *tasker.Client
	taskID int64
	w      io.Writer
	mode   progressMode
	color  painter

	events <-chan tasker.Event
	cancel func()
	done   chan struct{}

	// Owned by the goroutine until done is closed.
	detail     *tasker.TaskDetail
	maxAtt     map[string]int
	started    map[string]time.Time // first step.started per step name
	drawnLines int
}

// startProgress subscribes to the task's events and starts showing them.
func startProgress(c *tasker.Client, detail *tasker.TaskDetail, w io.Writer, mode progressMode, color bool) *progress {
	p := &progress{c: c, taskID: detail.ID, w: w, mode: mode, color: painter(color), detail: detail,
		maxAtt: map[string]int{}, started: map[string]time.Time{}, done: make(chan struct{})}
	for _, st := range detail.Steps {
		p.maxAtt[st.Name] = st.MaxAttempts
		if st.LastAttemptedAt != nil {
			p.started[st.Name] = *st.LastAttemptedAt
		}
	}
	if mode == progressNone {
		close(p.done)
		return p
	}
	p.events, p.cancel = c.Subscribe()
	switch mode {
	case progressPlain:
		go p.plainLoop()
	case progressLive:
		fmt.Fprint(w, "\x1b[?25l") // hide the cursor while redrawing
		go p.liveLoop()
	}
	return p
}

// stop ends the subscription, prints what is left and, for the live view,
// draws the final state.
func (p *progress) stop(final *tasker.TaskDetail) {
	if p.cancel != nil {
		p.cancel()
	}
	<-p.done
	if p.mode == progressLive {
		if final != nil {
			p.detail = final
		}
		p.draw(time.Now())
		fmt.Fprint(p.w, "\x1b[?25h")
	}
}

func (p *progress) plainLoop() {
	defer close(p.done)
	for ev := range p.events {
		if ev.TaskID != p.taskID {
			continue
		}
		if line := p.describe(ev); line != "" {
			fmt.Fprintf(p.w, "%s %s\n", ev.Time.Local().Format("15:04:05.000"), line)
		}
	}
}

func (p *progress) liveLoop() {
	defer close(p.done)
	ctx := context.Background()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	dirty := true
	lastRead := time.Time{}
	p.draw(time.Now())
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				return
			}
			if ev.TaskID == p.taskID {
				if ev.Kind == tasker.EventKind("step.started") {
					if _, seen := p.started[ev.StepName]; !seen {
						p.started[ev.StepName] = ev.Time
					}
				}
				dirty = true
			}
		case now := <-tick.C:
			// Re-read on events (at most every tick) and every 500 ms anyway.
			if dirty || now.Sub(lastRead) >= 500*time.Millisecond {
				if d, err := p.c.Task(ctx, p.taskID); err == nil {
					p.detail = d
				}
				dirty, lastRead = false, now
			}
			p.draw(now)
		}
	}
}

// draw redraws the live table in place.
func (p *progress) draw(now time.Time) {
	lines := p.lines(now)
	var b bytes.Buffer
	if p.drawnLines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", p.drawnLines)
	}
	for _, l := range lines {
		b.WriteString("\r\x1b[2K")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	p.drawnLines = len(lines)
	_, _ = p.w.Write(b.Bytes())
}

// lines renders the live table: a header and one line per step.
func (p *progress) lines(now time.Time) []string {
	d := p.detail
	width := terminalWidth() - 1
	key := d.Namespace + "/" + d.Name + "@" + d.Version
	head := fmt.Sprintf("task %d %s  %s  %s", d.ID, key, p.color.paint(taskStyle(d.State), string(d.State)),
		fmtDuration(taskDuration(d.Task, now)))
	out := []string{head}
	nameW := 0
	for _, st := range d.Steps {
		nameW = max(nameW, len(st.Name))
	}
	for _, st := range d.Steps {
		marker, style := stepStyle(st.State)
		dur := ""
		if start, ok := p.started[st.Name]; ok {
			end := now
			if st.CompletedAt != nil {
				end = *st.CompletedAt
			}
			dur = fmtDuration(end.Sub(start))
		} else if st.LastAttemptedAt != nil {
			dur = fmtDuration(now.Sub(*st.LastAttemptedAt))
		}
		note := stepNote(st, now)
		plain := fmt.Sprintf("  %s %s  %s  %d/%d  %s", marker, pad(st.Name, nameW), pad(string(st.State), 17),
			st.Attempts, st.MaxAttempts, pad(dur, 8))
		room := width - len([]rune(plain)) - 2
		if note != "" && room > 8 {
			note = "  " + truncate(note, room)
		} else {
			note = ""
		}
		line := fmt.Sprintf("  %s %s  %s  %d/%d  %s%s", p.color.paint(style, marker), pad(st.Name, nameW),
			p.color.paint(style, pad(string(st.State), 17)), st.Attempts, st.MaxAttempts, pad(dur, 8),
			p.color.paint(ansiDim, note))
		out = append(out, strings.TrimRight(line, " "))
	}
	return out
}

// stepNote is the short remark after a step's line: when it retries, or
// why it failed.
func stepNote(st *tasker.Step, now time.Time) string {
	switch st.State {
	case "waiting_for_retry":
		if st.NextRetryAt != nil {
			msg, _ := errorMessage(st.Error)
			return fmt.Sprintf("retry in %s: %s", fmtDuration(st.NextRetryAt.Sub(now)), msg)
		}
	case "error":
		if msg, ok := errorMessage(st.Error); ok {
			return msg
		}
	case "in_progress":
		if st.Attempts > 1 {
			return fmt.Sprintf("attempt %d", st.Attempts)
		}
	}
	return ""
}

// describe renders one event as a log line ("" to skip it).
func (p *progress) describe(ev tasker.Event) string {
	att := intData(ev.Data, "attempt")
	of := func() string {
		if m := p.maxAtt[fanOutTemplateStep(ev.StepName)]; m > 0 {
			return fmt.Sprintf("attempt %d/%d", att, m)
		}
		return fmt.Sprintf("attempt %d", att)
	}
	switch ev.Kind {
	case "task.started":
		return fmt.Sprintf("task %d running", ev.TaskID)
	case "task.reenqueue":
		if delay := floatData(ev.Data, "delay_seconds"); delay > 0 {
			return fmt.Sprintf("task %d waiting %s for a retry", ev.TaskID,
				fmtDuration(time.Duration(delay*float64(time.Second))))
		}
	case "step.started":
		return fmt.Sprintf("step %s started (%s)", ev.StepName, of())
	case "step.completed":
		return fmt.Sprintf("step %s complete in %s (%s)", ev.StepName,
			fmtDuration(time.Duration(intData(ev.Data, "duration_ms"))*time.Millisecond), of())
	case "step.failed":
		msg := fmt.Sprintf("step %s failed (%s): %s", ev.StepName, of(), oneLine(strData(ev.Data, "error")))
		if b, _ := ev.Data["permanent"].(bool); b {
			msg += " [no more attempts"
			if r := strData(ev.Data, "reason"); r != "" {
				msg += ": " + r
			}
			msg += "]"
		}
		return msg
	case "step.retry_scheduled":
		return fmt.Sprintf("step %s retries in %s", ev.StepName,
			fmtDuration(time.Duration(floatData(ev.Data, "delay_seconds")*float64(time.Second))))
	case "step.retried":
		return fmt.Sprintf("step %s retried by %s", ev.StepName, strData(ev.Data, "actor"))
	case "step.resolved_manually":
		return fmt.Sprintf("step %s resolved manually by %s", ev.StepName, strData(ev.Data, "actor"))
	case "step.cancelled":
		return fmt.Sprintf("step %s cancelled", ev.StepName)
	case "step.skipped":
		return fmt.Sprintf("step %s skipped: %s", ev.StepName, strData(ev.Data, "reason"))
	case "step.expanded":
		return fmt.Sprintf("step %s %s", ev.StepName, strData(ev.Data, "reason"))
	}
	return ""
}

func intData(m map[string]any, key string) int64 {
	switch v := m[key].(type) {
	case int:
		return int64(v)
	case int64:
		return v
	case int32:
		return int64(v)
	case float64:
		return int64(v)
	}
	return 0
}

func floatData(m map[string]any, key string) float64 {
	switch v := m[key].(type) {
	case float64:
		return v
	case int:
		return float64(v)
	case int64:
		return float64(v)
	}
	return 0
}

func strData(m map[string]any, key string) string {
	switch v := m[key].(type) {
	case string:
		return v
	case nil:
		return ""
	case fmt.Stringer:
		return v.String()
	}
	return strings.TrimSpace(fmt.Sprint(m[key]))
}
