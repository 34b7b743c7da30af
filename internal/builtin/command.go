package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tasker-systems/tasker/taskertype"
)

const (
	// stderrTailBytes is how much of the end of stderr goes into an error.
	stderrTailBytes = 2 << 10
	// commandWaitDelay bounds how long Wait waits for the output pipes to
	// close once the program has exited or been killed (a background
	// grandchild may hold them open).
	commandWaitDelay = 2 * time.Second
	// shellPath runs scripts when handler_config.shell is true.
	shellPath = "/bin/sh"
	// maxEnvContextBytes is the largest task context also passed in the
	// TASKER_CONTEXT variable; a larger one is only in TASKER_CONTEXT_FILE
	// (and in the default stdin document).
	maxEnvContextBytes = 64 << 10
)

// DisabledCommandMessage is the error text of tasker:command when
// Options.EnableCommand is false.
const DisabledCommandMessage = "tasker:command is disabled: enable it with --enable-command or TASKER_ENABLE_COMMAND=1"

// commandHandler implements tasker:command.
type commandHandler struct {
	enabled   bool
	maxStdout int64
}

// commandSpec is one step's validated, expanded command settings.
type commandSpec struct {
	path      string   // program (or the shell)
	args      []string // arguments after the program name
	display   string   // what error messages call the command
	env       []string
	dir       string
	stdin     []byte
	timeout   time.Duration
	permanent []int
}

// Handle runs the program once and maps its outcome to results or a typed
// error.
func (h *commandHandler) Handle(ctx context.Context, step *taskertype.StepContext) (any, error) {
	if !h.enabled {
		return nil, taskertype.Permanent(fmt.Errorf("%s (step %q)", DisabledCommandMessage, step.StepName))
	}
	// The task context goes to a file (always) and to TASKER_CONTEXT (only
	// when small): one environment string is limited to 128 KiB on Linux,
	// and every string counts against the limit of the whole exec.
	taskContext := rawOrNull(step.Context)
	contextFile, err := writeContextFile(taskContext)
	if err != nil {
		return nil, taskertype.Retryable(fmt.Errorf("%s: step %q: writing the task context file: %w",
			CommandName, step.StepName, err), 0)
	}
	defer os.Remove(contextFile)
	spec, err := parseCommandConfig(step, taskContext, contextFile)
	if err != nil {
		return nil, err
	}
	prefix := fmt.Sprintf("%s: step %q: command %s", CommandName, step.StepName, spec.display)

	runCtx := ctx
	if spec.timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, spec.timeout)
		defer cancel()
	}
	stdout := &capWriter{max: h.maxStdout}
	stderr := &tailWriter{max: stderrTailBytes}
	res := runProcess(runCtx, spec, bytes.NewReader(spec.stdin), stdout, stderr)

	if !res.ok() && runCtx.Err() != nil {
		switch {
		case ctx.Err() == nil:
			return nil, taskertype.Retryable(fmt.Errorf("%s: timed out after %s (handler_config.timeout_seconds); its process group was killed%s",
				prefix, spec.timeout, stderr.suffix()), 0)
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return nil, taskertype.Retryable(fmt.Errorf("%s: timed out (step deadline); its process group was killed%s",
				prefix, stderr.suffix()), 0)
		default:
			return nil, taskertype.Retryable(fmt.Errorf("%s: cancelled; its process group was killed%s",
				prefix, stderr.suffix()), 0)
		}
	}
	switch {
	case res.startErr != nil:
		return nil, startError(prefix, res.startErr)
	case res.signal != "":
		return nil, taskertype.Retryable(fmt.Errorf("%s: terminated (%s)%s", prefix, res.signal, stderr.suffix()), 0)
	case res.exitCode != 0:
		e := fmt.Errorf("%s: exited with code %d%s", prefix, res.exitCode, stderr.suffix())
		if slices.Contains(spec.permanent, res.exitCode) {
			return nil, taskertype.Permanent(e)
		}
		return nil, taskertype.Retryable(e, 0)
	}
	if stdout.overflow {
		return nil, taskertype.Permanent(fmt.Errorf("%s: standard output exceeds the limit of %d bytes", prefix, h.maxStdout))
	}
	return commandResults(stdout.buf.Bytes()), nil
}

// commandResults turns standard output into results: its JSON value when it
// is JSON, else {"stdout": text} with trailing newlines removed.
func commandResults(out []byte) any {
	if trimmed := bytes.TrimSpace(out); len(trimmed) > 0 {
		var buf bytes.Buffer
		if json.Compact(&buf, trimmed) == nil {
			return json.RawMessage(buf.Bytes())
		}
	}
	return map[string]any{"stdout": strings.TrimRight(string(out), "\r\n")}
}

// startError classifies a failure to start the program: a missing or
// unusable program is permanent, anything else (no processes left...)
// retryable.
func startError(prefix string, err error) error {
	e := fmt.Errorf("%s: could not start: %w", prefix, err)
	if errors.Is(err, syscall.E2BIG) {
		e = fmt.Errorf("%s: could not start: %w (the arguments and environment exceed the system limit: "+
			"pass large values through stdin or read the context from $TASKER_CONTEXT_FILE)", prefix, err)
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, exec.ErrDot) ||
		errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, syscall.ENOEXEC) || errors.Is(err, syscall.E2BIG) ||
		errors.Is(err, syscall.ENOTDIR) {
		return taskertype.Permanent(e)
	}
	return taskertype.Retryable(e, 0)
}

// parseCommandConfig validates and expands tasker:command's handler_config.
// taskContext is the compact task context and contextFile the file that
// holds it.
func parseCommandConfig(step *taskertype.StepContext, taskContext []byte, contextFile string) (*commandSpec, error) {
	cfg := newConfig(CommandName, step)
	x := newExpander(CommandName, step)
	spec := &commandSpec{}

	command, err := cfg.str("command", "")
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(command) == "" {
		return nil, cfg.errorf("command", "required")
	}
	shell, err := cfg.boolean("shell", false)
	if err != nil {
		return nil, err
	}

	var args []string
	if v, ok := cfg.get("args"); ok {
		list, isList := asList(v)
		if !isList {
			return nil, cfg.errorf("args", "must be a list, got %s", typeName(v))
		}
		for i, a := range list {
			if _, isMap := asMap(a); isMap {
				return nil, cfg.errorf(fmt.Sprintf("args[%d]", i), "must be a string, got a map")
			}
			s, err := x.expandText(a, fmt.Sprintf("handler_config.args[%d]", i))
			if err != nil {
				return nil, err
			}
			if strings.IndexByte(s, 0) >= 0 {
				return nil, cfg.errorf(fmt.Sprintf("args[%d]", i), "must not contain NUL")
			}
			args = append(args, s)
		}
	}
	if shell {
		// The script is not expanded: pass values through env or args
		// ("$1"), which the shell never re-parses as code.
		spec.path = shellPath
		spec.args = append([]string{"-c", command, "sh"}, args...)
		spec.display = "sh -c " + strconv.Quote(abbreviate(command, 60))
	} else {
		spec.path = command
		spec.args = args
		spec.display = strconv.Quote(command)
	}

	if spec.dir, err = cfg.str("dir", ""); err != nil {
		return nil, err
	}
	if spec.timeout, _, err = cfg.seconds("timeout_seconds"); err != nil {
		return nil, err
	}
	if spec.permanent, err = cfg.intList("permanent_exit_codes"); err != nil {
		return nil, err
	}

	// Environment: PATH and HOME from the parent, the TASKER_* variables,
	// then handler_config.env (which may override any of them).
	env := map[string]string{}
	for _, k := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	env["TASKER_TASK_ID"] = strconv.FormatInt(step.TaskID, 10)
	env["TASKER_STEP_NAME"] = step.StepName
	env["TASKER_ATTEMPT"] = strconv.Itoa(step.Attempt)
	env["TASKER_CONTEXT_FILE"] = contextFile
	if len(taskContext) <= maxEnvContextBytes {
		env["TASKER_CONTEXT"] = string(taskContext)
	}
	userEnv, err := cfg.stringMap("env")
	if err != nil {
		return nil, err
	}
	for k, v := range userEnv {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, cfg.errorf("env", "%q is not a valid variable name", k)
		}
		s, err := x.expandText(v, "handler_config.env."+k)
		if err != nil {
			return nil, err
		}
		if strings.IndexByte(s, 0) >= 0 {
			return nil, cfg.errorf("env."+k, "must not contain NUL")
		}
		env[k] = s
	}
	for k, v := range env {
		spec.env = append(spec.env, k+"="+v)
	}
	slices.Sort(spec.env)

	// Standard input: handler_config.stdin (text as is, other values as
	// JSON), or a JSON document describing the attempt.
	if v, ok := cfg.get("stdin"); ok {
		ev, err := x.expand(v, "handler_config.stdin")
		if err != nil {
			return nil, err
		}
		if s, isStr := ev.(string); isStr {
			spec.stdin = []byte(s)
		} else if spec.stdin, err = marshalJSON(ev); err != nil {
			return nil, cfg.errorf("stdin", "cannot be encoded as JSON: %v", err)
		}
	} else {
		deps := make(map[string]json.RawMessage, len(step.DependencyResults))
		for k, v := range step.DependencyResults {
			deps[k] = rawOrNull(v)
		}
		doc := map[string]any{
			"context":            json.RawMessage(taskContext),
			"dependency_results": deps,
			"step":               step.StepName,
			"attempt":            step.Attempt,
		}
		if spec.stdin, err = marshalJSON(doc); err != nil {
			return nil, taskertype.Permanent(fmt.Errorf("%s: step %q: cannot build the stdin document: %v",
				CommandName, step.StepName, err))
		}
	}
	return spec, nil
}

// writeContextFile writes the task context to a new private temporary file
// and returns its path; the caller removes it.
func writeContextFile(taskContext []byte) (string, error) {
	f, err := os.CreateTemp("", "tasker-context-*.json")
	if err != nil {
		return "", err
	}
	_, werr := f.Write(taskContext)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// rawOrNull returns raw compacted, or null when it is empty or not JSON.
func rawOrNull(raw json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if len(bytes.TrimSpace(raw)) == 0 || json.Compact(&buf, raw) != nil {
		return json.RawMessage("null")
	}
	return json.RawMessage(buf.Bytes())
}

// abbreviate shortens s to about n bytes for messages.
func abbreviate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

// capWriter keeps the first max bytes written and notes any overflow; it
// never fails, so the program is never blocked on a full pipe.
type capWriter struct {
	max      int64
	buf      bytes.Buffer
	overflow bool
}

// Write implements io.Writer.
func (w *capWriter) Write(p []byte) (int, error) {
	room := w.max - int64(w.buf.Len())
	if int64(len(p)) > room {
		w.overflow = true
		if room > 0 {
			w.buf.Write(p[:room])
		}
		return len(p), nil
	}
	w.buf.Write(p)
	return len(p), nil
}

// tailWriter keeps the last max bytes written.
type tailWriter struct {
	max       int
	buf       []byte
	truncated bool
}

// Write implements io.Writer.
func (w *tailWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= w.max {
		w.truncated = w.truncated || len(w.buf) > 0 || len(p) > w.max
		w.buf = append(w.buf[:0], p[len(p)-w.max:]...)
		return n, nil
	}
	if over := len(w.buf) + len(p) - w.max; over > 0 {
		w.truncated = true
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	w.buf = append(w.buf, p...)
	return n, nil
}

// suffix renders the kept stderr for an error message ("" when empty).
func (w *tailWriter) suffix() string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(w.buf), "\uFFFD"))
	if s == "" {
		return ""
	}
	if w.truncated {
		s = "..." + s
	}
	return "; stderr: " + s
}

// procResult is how one run of a program ended.
type procResult struct {
	// startErr is set when the program could not be started.
	startErr error
	// signal describes the signal that terminated the program, as in
	// "signal: killed" ("" if none).
	signal string
	// exitCode is the program's exit status when it exited by itself.
	exitCode int
	// finished is true when the program ran and its end was observed.
	finished bool
}

// ok reports whether the program ran and exited with status 0.
func (r procResult) ok() bool {
	return r.finished && r.startErr == nil && r.signal == "" && r.exitCode == 0
}
