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
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
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

// DefaultHTTPTimeout is the deadline of one tasker:http attempt when the
// step sets no handler_config.timeout_seconds: 30 seconds.
const DefaultHTTPTimeout = 30 * time.Second

// Options configures the built-in handlers.
type Options struct {
	// EnableCommand allows tasker:command to run programs. It is off by
	// default: a disabled tasker:command fails every attempt permanently.
	EnableCommand bool
	// HTTPClient is the client tasker:http uses. Nil means a client with
	// sane transport defaults and no global timeout: per-step timeouts come
	// from the step's context and handler_config.timeout_seconds. Its
	// CheckRedirect is replaced, per request, by the step's redirect policy
	// (handler_config.redirects and the allow-lists).
	HTTPClient *http.Client
	// MaxResponseBytes bounds an HTTP response body and a command's standard
	// output; a larger one is a permanent error. It is also the largest
	// handler_config.max_response_bytes a tasker:http step may ask for.
	// Zero or negative means DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// HTTPTimeout is the deadline of a tasker:http attempt (connect, send,
	// headers and body) when the step sets no timeout_seconds. Zero or
	// negative means DefaultHTTPTimeout.
	HTTPTimeout time.Duration
	// HTTPAllowedHosts, when not nil, is the list of hosts tasker:http may
	// reach, in every step and at every redirect: "api.example.com",
	// "*.example.com" (subdomains), "10.0.0.5:8080" (one port), "*" (any).
	// An empty, non-nil list allows no host. Nil means the comma-separated
	// list in the TASKER_HTTP_ALLOWED_HOSTS environment variable, or no
	// process-wide restriction when that is unset or empty.
	HTTPAllowedHosts []string
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
//
// In the url of tasker:http each interpolated value is escaped for the part
// of the URL it lands in: a path segment, a query key or value, or (before
// the path) host-name characters only; "${raw:REF}" inserts it unescaped.
// See expandURL and docs/builtins.md, which documents every setting of
// every built-in handler.
//
// An invalid allow-list (Options.HTTPAllowedHosts or
// TASKER_HTTP_ALLOWED_HOSTS) does not fail here: every tasker:http attempt
// then fails permanently with the reason, and no request is made.
func Handlers(opts Options) map[string]taskertype.StepHandler {
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if opts.HTTPTimeout <= 0 {
		opts.HTTPTimeout = DefaultHTTPTimeout
	}
	client := opts.HTTPClient
	if client == nil {
		client = defaultHTTPClient()
	}
	var httpH taskertype.StepHandler
	allowed, err := processAllowList(opts.HTTPAllowedHosts)
	if err != nil {
		httpH = taskertype.StepHandlerFunc(func(_ context.Context, step *taskertype.StepContext) (any, error) {
			return nil, taskertype.Permanent(fmt.Errorf("%s: step %q: %w", HTTPName, step.StepName, err))
		})
	} else {
		httpH = &httpHandler{client: client, maxBytes: opts.MaxResponseBytes, timeout: opts.HTTPTimeout, allowedHosts: allowed}
	}
	return map[string]taskertype.StepHandler{
		NoopName:    taskertype.StepHandlerFunc(handleNoop),
		SleepName:   taskertype.StepHandlerFunc(handleSleep),
		FailName:    taskertype.StepHandlerFunc(handleFail),
		HTTPName:    httpH,
		CommandName: &commandHandler{enabled: opts.EnableCommand, maxStdout: opts.MaxResponseBytes},
	}
}

// processAllowList reads the process-wide allow-list: list when not nil,
// else the environment variable. Nil means no restriction.
func processAllowList(list []string) ([]hostPattern, error) {
	if list == nil {
		v := strings.TrimSpace(os.Getenv(EnvHTTPAllowedHosts))
		if v == "" {
			return nil, nil
		}
		out, err := parseHostList(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvHTTPAllowedHosts, err)
		}
		return out, nil
	}
	out := []hostPattern{}
	for _, s := range list {
		p, err := parseHostPattern(s)
		if err != nil {
			return nil, fmt.Errorf("Options.HTTPAllowedHosts: %q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// defaultHTTPClient builds the client used when Options.HTTPClient is nil:
// bounded connection set-up, no overall timeout.
func defaultHTTPClient() *http.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    10,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20, // the body has its own cap
	}
	return &http.Client{Transport: transport}
}
