package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
)

// Defaults and limits of `tasker task create --from-file`.
const (
	// createBatchDefault is how many requests one InitializeTasks call carries.
	createBatchDefault = tasker.BatchChunkSize
	// createMaxLineBytes bounds one line of the requests file.
	createMaxLineBytes = 16 << 20
)

// createFlags are the flags of `tasker task create`.
type createFlags struct {
	fromFile string
	batch    int
	failFast bool
	asJSON   bool
}

// createLine is one request of the file with its line number.
type createLine struct {
	line int
	req  *tasker.TaskRequest // nil when the line is not a request
	err  error               // why it is not
}

// createSummary counts the outcomes of `tasker task create`.
type createSummary struct {
	Created  int     `json:"created"`
	Existing int     `json:"existing"`
	Failed   int     `json:"failed"`
	Seconds  float64 `json:"seconds"`
	PerSec   float64 `json:"tasks_per_second"`
	// Stopped is set when --fail-fast stopped at a failed line.
	Stopped bool `json:"stopped,omitempty"`
}

func (a *app) taskCreateCommand() *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "create --from-file FILE",
		Short: "Create many tasks from a file of JSON requests, one per line",
		Long: `Create tasks from FILE ("-" for standard input): newline-delimited JSON, one
task request per line, with the fields of POST /v1/tasks (namespace, name,
version, context, idempotency_key, ...). Blank lines are skipped. Requests
are sent in batches (--batch, one transaction each) against the database of
--database-url, and every request is checked against its template like a
single create.

A line that is not a valid request (malformed JSON, unknown template,
context that violates the schema) is reported on stderr with its line number
and skipped; reports come in line order. With --fail-fast no line after the
first bad one is read: the lines before it are written (and, when the core
refused it, the other requests of its batch). A UTF-8 byte order mark and
CRLF line ends are accepted. A request whose idempotency key exists
counts as existing, not created. On a terminal a progress bar shows on
stderr; at the end a summary is printed (--json: as a JSON object). The exit
status is 0 when every line created or found its task, 1 otherwise.`,
		Example: `  tasker task create --from-file tasks.ndjson
  generate-requests | tasker task create --from-file - --batch 500 --fail-fast`,
		Args: noArgs,
		RunE: wrapRun(func(cmd *cobra.Command, _ []string) error {
			if f.fromFile == "" {
				return usageErrorf("--from-file is required (a file of JSON task requests, one per line, or - for stdin)")
			}
			if f.batch <= 0 {
				return usageErrorf("--batch must be positive")
			}
			return a.taskCreate(cmd.Context(), &f)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.fromFile, "from-file", "", "newline-delimited JSON task requests (- for stdin)")
	fl.IntVar(&f.batch, "batch", createBatchDefault, "lines per batch (one transaction for their requests)")
	fl.BoolVar(&f.failFast, "fail-fast", false, "stop at the first line that fails instead of skipping it")
	fl.BoolVar(&f.asJSON, "json", false, "print the summary as JSON")
	return cmd
}

// taskCreate streams the requests file into batches of InitializeTasks.
func (a *app) taskCreate(ctx context.Context, f *createFlags) error {
	var in io.Reader = a.opts.Stdin
	total := -1 // unknown for stdin
	if f.fromFile != "-" {
		file, err := os.Open(f.fromFile)
		if err != nil {
			return usageError(err)
		}
		defer file.Close()
		if total, err = countRequestLines(file); err != nil {
			return fmt.Errorf("read %s: %w", f.fromFile, err)
		}
		if _, err := file.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("read %s: %w", f.fromFile, err)
		}
		in = file
	}
	c, err := a.openClient(ctx, openConfig{templates: templatesRequired})
	if err != nil {
		return err
	}
	defer c.Close()

	bar := newCountBar(a.opts.Stderr, total)
	var sum createSummary
	start := time.Now()
	report := func(line int, err error) {
		bar.clear()
		fmt.Fprintf(a.opts.Stderr, "%s:%d: %s\n", f.fromFile, line, oneLine(err.Error()))
	}
	// batch holds the lines read since the last send, bad ones included,
	// so that every line's outcome is reported in line order.
	var batch []createLine
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		reqs := make([]*tasker.TaskRequest, 0, len(batch))
		for _, l := range batch {
			if l.req != nil {
				reqs = append(reqs, l.req)
			}
		}
		var res []tasker.TaskResult
		if len(reqs) > 0 {
			var err error
			if res, err = c.InitializeTasks(ctx, reqs); err != nil {
				return fmt.Errorf("lines %d to %d: %w", batch[0].line, batch[len(batch)-1].line, err)
			}
		}
		k := 0
		for _, l := range batch {
			err := l.err
			if l.req != nil {
				r := res[k]
				k++
				if err = r.Err; err != nil {
					var be *tasker.BatchItemError
					if errors.As(r.Err, &be) {
						err = be.Err
					}
				} else if r.Created {
					sum.Created++
				} else {
					sum.Existing++
				}
			}
			if err != nil {
				sum.Failed++
				report(l.line, err)
				sum.Stopped = sum.Stopped || f.failFast
			}
		}
		bar.set(sum.Created+sum.Existing+sum.Failed, time.Since(start))
		batch = batch[:0]
		return nil
	}

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), createMaxLineBytes)
	line := 0
	for !sum.Stopped && sc.Scan() {
		line++
		raw := requestLine(sc.Bytes(), line)
		if len(raw) == 0 {
			continue
		}
		req, err := decodeRequestLine(raw)
		batch = append(batch, createLine{line: line, req: req, err: err})
		// A batch is --batch lines (bad ones count: a file of bad lines is
		// reported as it is read, not held); with --fail-fast a bad line
		// ends the reading, and the lines before it are written first.
		if len(batch) >= f.batch || (err != nil && f.failFast) {
			if err := send(); err != nil {
				bar.clear()
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		bar.clear()
		return fmt.Errorf("read %s after line %d: %w", f.fromFile, line, err)
	}
	if !sum.Stopped {
		if err := send(); err != nil {
			bar.clear()
			return err
		}
	}
	bar.finish(sum.Created+sum.Existing+sum.Failed, time.Since(start))
	sum.Seconds = time.Since(start).Seconds()
	if sum.Seconds > 0 {
		sum.PerSec = float64(sum.Created+sum.Existing) / sum.Seconds
	}
	if f.asJSON {
		if err := a.printJSON(sum); err != nil {
			return err
		}
	} else {
		msg := fmt.Sprintf("created %d, existing %d, failed %d in %.2fs (%.0f tasks/s)", sum.Created, sum.Existing,
			sum.Failed, sum.Seconds, sum.PerSec)
		if sum.Stopped {
			msg += "; stopped at the first failure (--fail-fast)"
		}
		fmt.Fprintln(a.opts.Stdout, msg)
	}
	if sum.Failed > 0 {
		return silentExit(ExitFailed)
	}
	return nil
}

// decodeRequestLine decodes one line into a task request, refusing unknown
// fields and trailing data.
func decodeRequestLine(raw []byte) (*tasker.TaskRequest, error) {
	var req tasker.TaskRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("not a JSON task request: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a JSON task request: more than one value on the line")
	}
	if strings.TrimSpace(req.Name) == "" {
		return nil, errors.New("invalid task request: name is required")
	}
	if bytes.Equal(bytes.TrimSpace(req.Context), []byte("null")) {
		req.Context = nil
	}
	return &req, nil
}

// countRequestLines counts the non-blank lines of r (the bar's total).
func countRequestLines(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), createMaxLineBytes)
	n, line := 0, 0
	for sc.Scan() {
		line++
		if len(requestLine(sc.Bytes(), line)) > 0 {
			n++
		}
	}
	return n, sc.Err()
}

// utf8BOM is the byte order mark some editors and Windows tools write at
// the start of a UTF-8 file.
var utf8BOM = []byte("\xef\xbb\xbf")

// requestLine is line number n's text without surrounding white space
// (a CRLF's carriage return included) and, on the first line, without a
// byte order mark.
func requestLine(b []byte, n int) []byte {
	if n == 1 {
		b = bytes.TrimPrefix(b, utf8BOM)
	}
	return bytes.TrimSpace(b)
}

// countBar draws "[=====>     ] done/total  rate/s" on one terminal line,
// redrawn in place; on anything but a terminal it draws nothing.
type countBar struct {
	w     io.Writer
	on    bool
	total int // -1: unknown (the bar shows the count and rate only)
	drawn bool
}

// newCountBar returns a bar on w for total items (-1 when unknown).
func newCountBar(w io.Writer, total int) *countBar {
	return &countBar{w: w, on: isTerminal(w), total: total}
}

const countBarWidth = 30

// set redraws the bar for done items after elapsed.
func (b *countBar) set(done int, elapsed time.Duration) {
	if !b.on {
		return
	}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	if b.total < 0 {
		fmt.Fprintf(b.w, "\r\x1b[K%d tasks  %.0f/s", done, rate)
	} else {
		filled := countBarWidth
		if b.total > 0 {
			filled = min(countBarWidth, done*countBarWidth/b.total)
		}
		head := ""
		if filled < countBarWidth {
			head = ">"
		}
		fmt.Fprintf(b.w, "\r\x1b[K[%s%s%s] %d/%d tasks  %.0f/s", strings.Repeat("=", filled), head,
			strings.Repeat(" ", max(0, countBarWidth-filled-len(head))), done, b.total, rate)
	}
	b.drawn = true
}

// clear erases the bar so that a message can be printed on its line.
func (b *countBar) clear() {
	if b.on && b.drawn {
		fmt.Fprint(b.w, "\r\x1b[K")
		b.drawn = false
	}
}

// finish draws the final state and ends the line.
func (b *countBar) finish(done int, elapsed time.Duration) {
	if !b.on {
		return
	}
	b.set(done, elapsed)
	fmt.Fprintln(b.w)
}
