// Command libtasker is the Tasker core as a C shared library, for the Ruby
// gem (bindings/ruby) and any other language with a C FFI. Build it with
//
//	go build -buildmode=c-shared -o libtasker.so ./libtasker
//
// The C ABI is JSON in, JSON out, with integer handles and an explicit free:
//
//	char *tasker_open(const char *config_json);     // {"ok":true,"result":{"handle":N}}
//	char *tasker_call(uint64_t handle, const char *method, const char *params_json, int64_t timeout_ms);
//	char *tasker_close(uint64_t handle);
//	void  tasker_shutdown(void);                      // closes every handle
//	char *tasker_version(void);
//	void  tasker_free(char *s);                       // every returned string
//
// Every returned string is a JSON document, {"ok":true,"result":...} or
// {"ok":false,"error":{"code":...,"message":...,"details":...}}, allocated
// with malloc and owned by the caller, who must pass it to tasker_free. The
// methods and their documents are those of POST /v1/rpc/{method} of
// `tasker serve` (docs/api.md, "RPC and pull API"), so a client speaks one
// protocol over both transports. Go never calls back into the caller: the
// caller pulls work (claim_steps), events (events_poll) and, when opened
// with "log_sink": "buffer", the core's log records (logs_poll, a method of
// this library only: the HTTP server logs on its own).
//
// Calls may come from any thread, concurrently. A call that can wait is
// bounded by timeout_ms (DefaultTimeout when <= 0); a timed-out call answers
// with the error code "timeout".
//
// A process that loaded this library must not fork and keep using it: the
// Go runtime does not survive fork(). The Ruby gem loads it lazily and
// refuses to use it in a forked child.
package main

/*
#include <stdint.h>
#include <stdlib.h>
*/
import "C"

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/httpapi"
)

// Version is the library version reported by tasker_version.
const Version = "0.1.0"

// DefaultTimeout bounds a call made with timeout_ms <= 0.
const DefaultTimeout = 60 * time.Second

// RescueIntervalDefault is how often an opened engine returns steps whose
// lease expired (a worker died) to the pool.
const RescueIntervalDefault = 10 * time.Second

// openConfig is the JSON document tasker_open takes.
type openConfig struct {
	// DatabaseURL: postgres://..., sqlite:PATH; "" is the SQLite default file.
	DatabaseURL string `json:"database_url"`
	// TemplatesDir defaults to config/tasker/tasks (missing is fine).
	TemplatesDir string `json:"templates_dir"`
	// Environment selects environments.<name> template overrides.
	Environment string `json:"environment"`
	// AutoMigrate applies pending migrations on PostgreSQL (SQLite always).
	AutoMigrate bool `json:"auto_migrate"`
	// EventEnqueue publishes task.enqueue/reenqueue events for an external
	// job system (the default, true) instead of expecting Go runners.
	EventEnqueue *bool `json:"event_enqueue"`
	// StepLeaseMS is how long a claimed step stays held without a heartbeat.
	StepLeaseMS int64 `json:"step_lease_ms"`
	// RescueIntervalMS: how often expired leases are rescued; < 0 turns the
	// background rescuer off.
	RescueIntervalMS int64 `json:"rescue_interval_ms"`
	// Backoff tunes retry delays (milliseconds); zero fields keep defaults.
	Backoff *backoffConfig `json:"backoff"`
	// Owner names this process in transitions; defaults to host-pid-random.
	Owner string `json:"owner"`
	// LogLevel is debug, info, warn (default) or error.
	LogLevel string `json:"log_level"`
	// LogSink is where the core's log records go: "stderr" (the default,
	// slog's text format) or "buffer" (kept in memory, the last
	// LogBufferSize records, for the logs_poll method).
	LogSink string `json:"log_sink"`
	// EnableCommandHandler allows the built-in tasker:command handler.
	EnableCommandHandler bool `json:"enable_command_handler"`
}

type backoffConfig struct {
	BaseMS       float64 `json:"base_ms"`
	MaxMS        float64 `json:"max_ms"`
	MinMS        float64 `json:"min_ms"`
	MaxServerMS  float64 `json:"max_server_ms"`
	Multiplier   float64 `json:"multiplier"`
	Jitter       float64 `json:"jitter"`
	PriorityStep float64 `json:"priority_step"`
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// instance is one opened engine.
type instance struct {
	client   *tasker.Client
	dispatch *httpapi.Dispatcher
	stop     context.CancelFunc
	bg       sync.WaitGroup
	// calls counts calls in flight, so that close waits for them.
	calls sync.WaitGroup
	// logs holds the log records with the "buffer" sink (else nil).
	logs *logBuffer
	// log is the engine's logger (tasker_create_tasks logs with it).
	log *slog.Logger
}

var (
	mu        sync.Mutex
	instances = map[uint64]*instance{}
	nextID    uint64
)

// envelope is every answer's shape.
type envelope struct {
	OK     bool               `json:"ok"`
	Result any                `json:"result,omitempty"`
	Error  *httpapi.ErrorBody `json:"error,omitempty"`
}

func answer(result any, err error) *C.char {
	return C.CString(string(encodeAnswer(result, err)))
}

// encodeAnswer is the JSON document answer returns.
func encodeAnswer(result any, err error) []byte {
	var env envelope
	if err != nil {
		eb, _ := httpapi.ErrorOf(err)
		env.Error = &eb
	} else {
		env.OK, env.Result = true, result
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if encErr := enc.Encode(env); encErr != nil {
		buf.Reset()
		msg, _ := json.Marshal("encode answer: " + encErr.Error())
		buf.WriteString(`{"ok":false,"error":{"code":"internal","message":` + string(msg) + `}}`)
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// internalError is an error the caller cannot act on.
type internalError struct{ msg string }

func (e *internalError) Error() string { return e.msg }

func recovered(p any) error { return &internalError{msg: fmt.Sprintf("libtasker panicked: %v", p)} }

//export tasker_open
func tasker_open(config *C.char) (out *C.char) {
	defer func() {
		if p := recover(); p != nil {
			out = answer(nil, recovered(p))
		}
	}()
	var cfg openConfig
	if config != nil {
		raw := C.GoString(config)
		if strings.TrimSpace(raw) != "" {
			dec := json.NewDecoder(strings.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&cfg); err != nil {
				return answer(nil, fmt.Errorf("%w: open config: %v", tasker.ErrInvalidRequest, err))
			}
		}
	}
	id, err := open(&cfg)
	if err != nil {
		return answer(nil, err)
	}
	return answer(map[string]uint64{"handle": id}, nil)
}

func open(cfg *openConfig) (uint64, error) {
	var level slog.Level
	if cfg.LogLevel == "" {
		cfg.LogLevel = "warn"
	}
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return 0, fmt.Errorf("%w: log_level %q: want debug, info, warn or error", tasker.ErrInvalidRequest, cfg.LogLevel)
	}
	var logs *logBuffer
	var logger *slog.Logger
	switch cfg.LogSink {
	case "", LogSinkStderr:
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	case LogSinkBuffer:
		logs = newLogBuffer(LogBufferSize)
		logger = slog.New(newBufferHandler(logs, level))
	default:
		return 0, fmt.Errorf("%w: log_sink %q: want %q or %q", tasker.ErrInvalidRequest, cfg.LogSink, LogSinkStderr, LogSinkBuffer)
	}
	eventEnqueue := cfg.EventEnqueue == nil || *cfg.EventEnqueue
	tc := tasker.Config{DatabaseURL: cfg.DatabaseURL, TemplatesDir: cfg.TemplatesDir, Environment: cfg.Environment,
		AutoMigrate: cfg.AutoMigrate, EnableCommandHandler: cfg.EnableCommandHandler, EventEnqueue: eventEnqueue,
		StepLease: ms(float64(cfg.StepLeaseMS)), Owner: cfg.Owner, Logger: logger}
	if b := cfg.Backoff; b != nil {
		tc.Backoff = tasker.BackoffConfig{Base: ms(b.BaseMS), Max: ms(b.MaxMS), Min: ms(b.MinMS),
			MaxServerDelay: ms(b.MaxServerMS), Multiplier: b.Multiplier, Jitter: b.Jitter, PriorityStep: b.PriorityStep}
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	c, err := tasker.Open(ctx, tc)
	if err != nil {
		return 0, fmt.Errorf("open tasker: %w", err)
	}
	in := &instance{client: c, dispatch: httpapi.NewDispatcher(c, Version), logs: logs, log: logger}
	bg, stop := context.WithCancel(context.Background())
	in.stop = stop
	if cfg.RescueIntervalMS >= 0 {
		every := ms(float64(cfg.RescueIntervalMS))
		if every == 0 {
			every = RescueIntervalDefault
		}
		in.bg.Add(1)
		go func() {
			defer in.bg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			// Retention: the embedding processes prune as runners do (one
			// at a time across processes: the store's pruning lock).
			prune := time.NewTicker(tasker.PruneIntervalDefault)
			defer prune.Stop()
			for {
				select {
				case <-bg.Done():
					return
				case <-prune.C:
					if _, err := c.Prune(bg, tasker.PruneOptions{Pause: 100 * time.Millisecond}); err != nil && bg.Err() == nil {
						logger.Warn("libtasker: prune finished tasks", "err", err)
					}
				case <-t.C:
					if _, err := c.Worker().RescueExpired(bg); err != nil && bg.Err() == nil {
						logger.Warn("libtasker: rescue expired step leases", "err", err)
					}
				}
			}
		}()
	}
	mu.Lock()
	nextID++
	id := nextID
	instances[id] = in
	mu.Unlock()
	return id, nil
}

func lookup(handle uint64) (*instance, error) {
	mu.Lock()
	defer mu.Unlock()
	in := instances[uint64(handle)]
	if in == nil {
		return nil, fmt.Errorf("%w: no open engine with handle %d (closed, or never opened)", tasker.ErrInvalidRequest, handle)
	}
	in.calls.Add(1)
	return in, nil
}

//export tasker_call
func tasker_call(handle C.uint64_t, method *C.char, params *C.char, timeoutMS C.int64_t) (out *C.char) {
	defer func() {
		if p := recover(); p != nil {
			out = answer(nil, recovered(p))
		}
	}()
	in, err := lookup(uint64(handle))
	if err != nil {
		return answer(nil, err)
	}
	defer in.calls.Done()
	if method == nil {
		return answer(nil, fmt.Errorf("%w: method is required", tasker.ErrInvalidRequest))
	}
	timeout := time.Duration(timeoutMS) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var body []byte
	if params != nil {
		body = []byte(C.GoString(params))
	}
	name := C.GoString(method)
	if name == "logs_poll" {
		return answer(in.pollLogs(body))
	}
	res, err := in.dispatch.Call(ctx, name, body)
	if err != nil && ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (timeout %s): %w", context.DeadlineExceeded, timeout, err)
	}
	return answer(res, err)
}

//export tasker_close
func tasker_close(handle C.uint64_t) (out *C.char) {
	defer func() {
		if p := recover(); p != nil {
			out = answer(nil, recovered(p))
		}
	}()
	mu.Lock()
	in := instances[uint64(handle)]
	delete(instances, uint64(handle))
	mu.Unlock()
	if in == nil {
		return answer(map[string]bool{"closed": false}, nil)
	}
	err := closeInstance(in)
	if in.logs == nil {
		return answer(map[string]bool{"closed": true}, err)
	}
	if err != nil {
		return answer(nil, err)
	}
	// The records logged since the last logs_poll (while closing too).
	recs, dropped := in.logs.take(0)
	return answer(closeDoc{Closed: true, logsDoc: logsDoc{Records: recs, Dropped: dropped}}, nil)
}

// closeDoc answers tasker_close of an engine opened with the buffer sink.
type closeDoc struct {
	Closed bool `json:"closed"`
	logsDoc
}

// logsDoc answers logs_poll.
type logsDoc struct {
	Records []logRecord `json:"records"`
	// Dropped counts the records dropped since the previous poll (the
	// buffer was full).
	Dropped int64 `json:"dropped"`
}

// logsPollParams is the input of logs_poll.
type logsPollParams struct {
	// Max bounds the records returned (0: all).
	Max int `json:"max"`
}

// pollLogs answers logs_poll: the buffered log records, oldest first, which
// leave the buffer.
func (in *instance) pollLogs(params []byte) (any, error) {
	var p logsPollParams
	if raw := bytes.TrimSpace(params); len(raw) > 0 && string(raw) != "null" {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("%w: logs_poll params: %v", tasker.ErrInvalidRequest, err)
		}
	}
	if p.Max < 0 {
		return nil, fmt.Errorf("%w: logs_poll: max must not be negative", tasker.ErrInvalidRequest)
	}
	if in.logs == nil {
		return nil, fmt.Errorf("%w: logs_poll: this engine logs to stderr; open it with \"log_sink\": \"buffer\"", tasker.ErrInvalidRequest)
	}
	recs, dropped := in.logs.take(p.Max)
	return logsDoc{Records: recs, Dropped: dropped}, nil
}

func closeInstance(in *instance) error {
	in.stop()
	in.bg.Wait()
	in.dispatch.Close()
	done := make(chan struct{})
	go func() { in.calls.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(DefaultTimeout):
	}
	if err := in.client.Close(); err != nil {
		return fmt.Errorf("close tasker: %w", err)
	}
	return nil
}

//export tasker_shutdown
func tasker_shutdown() {
	defer func() { _ = recover() }()
	mu.Lock()
	all := instances
	instances = map[uint64]*instance{}
	mu.Unlock()
	for _, in := range all {
		_ = closeInstance(in)
	}
}

//export tasker_version
func tasker_version() *C.char {
	return answer(map[string]string{"version": Version, "protocol": httpapi.Protocol}, nil)
}

//export tasker_free
func tasker_free(s *C.char) {
	if s != nil {
		C.free(unsafe.Pointer(s))
	}
}

func main() {}
