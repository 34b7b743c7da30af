// Package builtin provides the step handlers that ship with tasker and can be
// used from a task template alone, without writing Go: tasker:noop,
// tasker:sleep, tasker:fail, tasker:http and tasker:command.
//
// Every handler reads its settings from the step's handler_config. Numbers
// may arrive as any Go integer or float type, as a json.Number or as a
// numeric string; booleans as bool or as a string strconv.ParseBool accepts.
// A missing or ill-typed setting is reported as a *taskertype.PermanentError
// that names the handler, the step and the handler_config key.
//
// The http and command handlers expand references such as
// "${context.order.id}" or "${steps.fetch.items.0}" in their settings; see
// the expansion rules on Handlers.
package builtin

import (
	"net"
	"net/http"
	"time"

	"github.com/tasker-systems/tasker/taskertype"
)

// Handler names, as written in a template's handler_class.
const (
	// NoopName is the handler that does nothing and succeeds.
	NoopName = "tasker:noop"
	// HTTPName is the handler that makes one HTTP request.
	HTTPName = "tasker:http"
	// CommandName is the handler that runs a program.
	CommandName = "tasker:command"
	// FailName is the test helper that fails a planned number of attempts.
	FailName = "tasker:fail"
	// SleepName is the handler that waits for a while.
	SleepName = "tasker:sleep"
)

// DefaultMaxResponseBytes is the default bound on an HTTP response body and
// on a command's standard output: 10 MiB.
const DefaultMaxResponseBytes int64 = 10 << 20

// Options configures the built-in handlers.
type Options struct {
	// EnableCommand allows tasker:command to run programs. It is off by
	// default: a disabled tasker:command fails every attempt permanently.
	EnableCommand bool
	// HTTPClient is the client tasker:http uses. Nil means a client with
	// sane transport defaults and no global timeout: per-step timeouts come
	// from the step's context and handler_config.timeout_seconds.
	HTTPClient *http.Client
	// MaxResponseBytes bounds an HTTP response body and a command's standard
	// output; a larger one is a permanent error. Zero or negative means
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64
}

// Handlers returns the built-in step handlers keyed by handler name:
// "tasker:noop", "tasker:http", "tasker:command", "tasker:fail" and
// "tasker:sleep".
//
// Expansion. In the url, query, headers and body of tasker:http and the args,
// env and stdin of tasker:command, a string that is exactly one reference,
// such as "${context.customer.id}", is replaced by the referenced JSON value,
// keeping its type (number, object, list...). Inside a longer string a
// reference is interpolated as text: strings as themselves, null as nothing,
// other values as compact JSON. Maps and lists are expanded recursively.
// References are:
//
//	${context.PATH}        the task context
//	${steps.NAME.PATH}     the results of parent step NAME
//	${inputs.PATH}         the step's inputs
//	${step.attempt}        also step.name, step.id, step.max_attempts
//	${task.id}             also task.namespace, task.name, task.version
//
// PATH is a dot-separated list of object keys and decimal array indexes, and
// may be empty ("${context}" is the whole context). "$${" writes a literal
// "${". A reference that cannot be resolved is a permanent error naming the
// reference and the step.
func Handlers(opts Options) map[string]taskertype.StepHandler {
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	client := opts.HTTPClient
	if client == nil {
		client = defaultHTTPClient()
	}
	return map[string]taskertype.StepHandler{
		NoopName:    taskertype.StepHandlerFunc(handleNoop),
		SleepName:   taskertype.StepHandlerFunc(handleSleep),
		FailName:    taskertype.StepHandlerFunc(handleFail),
		HTTPName:    &httpHandler{client: client, maxBytes: opts.MaxResponseBytes},
		CommandName: &commandHandler{enabled: opts.EnableCommand, maxStdout: opts.MaxResponseBytes},
	}
}

// defaultHTTPClient builds the client used when Options.HTTPClient is nil:
// bounded connection set-up, no overall timeout.
func defaultHTTPClient() *http.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: transport}
}
