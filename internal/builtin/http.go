package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tasker-systems/tasker/taskertype"
)

// errorBodyBytes is how much of an error response's body goes into the
// error message.
const errorBodyBytes = 512

// maxRedirects is how many redirects one attempt follows at most.
const maxRedirects = 10

// Values of handler_config.redirects.
const (
	redirectsSameOrigin = "same_origin"
	redirectsNone       = "none"
	redirectsAny        = "any"
)

// httpHandler implements tasker:http.
type httpHandler struct {
	client       *http.Client
	maxBytes     int64         // ceiling (and default) of max_response_bytes
	timeout      time.Duration // default timeout_seconds
	allowedHosts []hostPattern // process-wide allow-list; nil allows all
}

// httpRequest is one step's validated, expanded request settings.
type httpRequest struct {
	method     string
	url        *url.URL
	safeURL    string // url without userinfo, query or fragment, for messages
	headers    http.Header
	custom     []string // header names from handler_config.headers
	host       string
	body       []byte
	hasBody    bool
	timeout    time.Duration
	timeoutSet bool // timeout came from handler_config.timeout_seconds
	permanent  map[int]bool
	retryable  map[int]bool
	expectJSON bool
	maxBytes   int64
	redirects  string
	allowed    []hostPattern // handler_config.allowed_hosts; nil allows all
}

// Handle makes one request and maps the outcome to results or a typed error.
func (h *httpHandler) Handle(ctx context.Context, step *taskertype.StepContext) (any, error) {
	r, err := parseHTTPConfig(step, h.maxBytes, h.timeout)
	if err != nil {
		return nil, err
	}
	prefix := fmt.Sprintf("%s: step %q: %s %s", HTTPName, step.StepName, r.method, r.safeURL)
	if err := h.checkHost(r, r.url); err != nil {
		return nil, taskertype.Permanent(fmt.Errorf("%s: %w", prefix, err))
	}

	// One deadline for the whole attempt: connecting, sending, waiting for
	// the headers and reading the body, redirects included. Without
	// timeout_seconds, the step's own deadline (the template's
	// timeout_seconds) stands alone, and the default applies when there is
	// none: no attempt waits for ever.
	reqCtx := ctx
	if _, hasDeadline := ctx.Deadline(); r.timeoutSet || !hasDeadline {
		var cancel context.CancelFunc
		reqCtx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	var body io.Reader
	if r.hasBody {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(reqCtx, r.method, r.url.String(), body)
	if err != nil {
		return nil, taskertype.Permanent(fmt.Errorf("%s: invalid request: %v", prefix, unwrapURLError(err)))
	}
	req.Header = r.headers
	if step.TraceParent != "" && req.Header.Get("traceparent") == "" { // W3C trace context; handler_config wins
		req.Header.Set("traceparent", step.TraceParent)
	}
	if r.host != "" {
		req.Host = r.host
	}

	client := *h.client
	client.CheckRedirect = h.redirectPolicy(r)
	resp, err := client.Do(req)
	if err != nil {
		var re *redirectError
		if errors.As(err, &re) {
			return nil, taskertype.Permanent(fmt.Errorf("%s: %w", prefix, re))
		}
		return nil, h.transportError(ctx, reqCtx, r, prefix, err)
	}
	defer resp.Body.Close()

	switch classifyStatus(resp.StatusCode, r) {
	case outcomeSuccess:
		return h.success(ctx, reqCtx, r, prefix, resp)
	case outcomeRetryable:
		msg := statusError(prefix, resp)
		after, _ := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return nil, taskertype.Retryable(msg, after)
	default:
		return nil, taskertype.Permanent(statusError(prefix, resp))
	}
}

// success reads a 2xx response: its body, as JSON when it is JSON, is the
// step's results.
func (h *httpHandler) success(ctx, reqCtx context.Context, r *httpRequest, prefix string, resp *http.Response) (any, error) {
	if r.method != http.MethodHead && resp.ContentLength > r.maxBytes {
		return nil, taskertype.Permanent(fmt.Errorf("%s: HTTP %d: response body of %d bytes exceeds the limit of %d bytes (handler_config.max_response_bytes)",
			prefix, resp.StatusCode, resp.ContentLength, r.maxBytes))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, r.maxBytes+1))
	if err != nil {
		return nil, h.transportError(ctx, reqCtx, r, prefix+": reading the response body", err)
	}
	if int64(len(data)) > r.maxBytes {
		return nil, taskertype.Permanent(fmt.Errorf("%s: HTTP %d: response body exceeds the limit of %d bytes (handler_config.max_response_bytes)",
			prefix, resp.StatusCode, r.maxBytes))
	}
	ctype := resp.Header.Get("Content-Type")
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, trimmed); err == nil {
			return json.RawMessage(buf.Bytes()), nil
		} else if r.expectJSON {
			return nil, taskertype.Permanent(fmt.Errorf("%s: HTTP %d: expect_json is set but the response (Content-Type %q) is not valid JSON: %v",
				prefix, resp.StatusCode, ctype, err))
		}
	} else if r.expectJSON {
		return nil, taskertype.Permanent(fmt.Errorf("%s: HTTP %d: expect_json is set but the response body is empty",
			prefix, resp.StatusCode))
	}
	return map[string]any{"status": resp.StatusCode, "body": string(data)}, nil
}

// transportError maps a failure to get (or read) a response to a retryable
// error. The *url.Error wrapper is dropped: it repeats the full URL, query
// string included.
func (h *httpHandler) transportError(ctx, reqCtx context.Context, r *httpRequest, prefix string, err error) error {
	err = unwrapURLError(err)
	var ne net.Error
	timedOut := errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
	switch {
	case ctx.Err() == nil && reqCtx.Err() != nil:
		source := "handler_config.timeout_seconds"
		if !r.timeoutSet {
			source = "the default deadline; set handler_config.timeout_seconds to change it"
		}
		return taskertype.Retryable(fmt.Errorf("%s: timed out after %s (%s)", prefix, r.timeout, source), 0)
	case errors.Is(ctx.Err(), context.Canceled):
		return taskertype.Retryable(fmt.Errorf("%s: cancelled: %w", prefix, err), 0)
	case timedOut || ctx.Err() != nil:
		return taskertype.Retryable(fmt.Errorf("%s: timed out: %w", prefix, err), 0)
	}
	return taskertype.Retryable(fmt.Errorf("%s: %w", prefix, err), 0)
}

// unwrapURLError returns the cause inside a *url.Error.
func unwrapURLError(err error) error {
	var ue *url.Error
	for errors.As(err, &ue) {
		err = ue.Err
	}
	return err
}

// statusError describes a non-success response, with the start of its body.
func statusError(prefix string, resp *http.Response) error {
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	text := strings.TrimSpace(strings.ToValidUTF8(string(snippet), "\uFFFD"))
	status := fmt.Sprintf("HTTP %d", resp.StatusCode)
	if st := http.StatusText(resp.StatusCode); st != "" {
		status += " " + st
	}
	if text == "" {
		return fmt.Errorf("%s: %s", prefix, status)
	}
	return fmt.Errorf("%s: %s: %s", prefix, status, text)
}

type outcome int

const (
	outcomeSuccess outcome = iota
	outcomeRetryable
	outcomePermanent
)

// classifyStatus decides what a status code means. The step's own
// retryable_statuses and permanent_statuses come first; then 2xx succeeds,
// 429 and 5xx are retryable, and everything else is permanent.
func classifyStatus(code int, r *httpRequest) outcome {
	switch {
	case r.retryable[code]:
		return outcomeRetryable
	case r.permanent[code]:
		return outcomePermanent
	case code >= 200 && code <= 299:
		return outcomeSuccess
	case code == http.StatusTooManyRequests, code >= 500 && code <= 599:
		return outcomeRetryable
	}
	return outcomePermanent
}

// parseHTTPConfig validates and expands tasker:http's handler_config.
// maxBytes is the ceiling and default of max_response_bytes, timeout the
// default of timeout_seconds.
func parseHTTPConfig(step *taskertype.StepContext, maxBytes int64, timeout time.Duration) (*httpRequest, error) {
	cfg := newConfig(HTTPName, step)
	x := newExpander(HTTPName, step)
	r := &httpRequest{headers: http.Header{}}

	// url
	rawURL, ok := cfg.get("url")
	if !ok {
		return nil, cfg.errorf("url", "required")
	}
	if _, isStr := rawURL.(string); !isStr {
		return nil, cfg.errorf("url", "must be a string, got %s", typeName(rawURL))
	}
	s, err := x.expandURL(rawURL.(string), "handler_config.url")
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		// url.Parse errors quote the whole URL; keep credentials out.
		return nil, cfg.errorf("url", "not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, cfg.errorf("url", "must be an http:// or https:// URL, got scheme %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, cfg.errorf("url", "has no host")
	}
	r.url = u
	r.safeURL = redactURL(u)

	// query
	query, err := cfg.stringMap("query")
	if err != nil {
		return nil, err
	}
	if len(query) > 0 {
		q := u.Query()
		for _, k := range sortedKeys(query) {
			v, err := x.expand(query[k], "handler_config.query."+k)
			if err != nil {
				return nil, err
			}
			if l, isList := asList(v); isList {
				for _, e := range l {
					q.Add(k, textOf(e))
				}
			} else {
				q.Add(k, textOf(v))
			}
		}
		u.RawQuery = q.Encode()
	}

	// headers
	headers, err := cfg.stringMap("headers")
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(headers) {
		if !isToken(k) {
			return nil, cfg.errorf("headers", "%q is not a valid header name", k)
		}
		v, err := x.expandText(headers[k], "handler_config.headers."+k)
		if err != nil {
			return nil, err
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, cfg.errorf("headers."+k, "must not contain line breaks or NUL")
		}
		if strings.EqualFold(k, "Host") {
			r.host = v
			continue
		}
		r.headers.Set(k, v)
		r.custom = append(r.custom, k)
	}

	// body
	if b, ok := cfg.get("body"); ok {
		ev, err := x.expand(b, "handler_config.body")
		if err != nil {
			return nil, err
		}
		data, err := marshalJSON(ev)
		if err != nil {
			return nil, cfg.errorf("body", "cannot be encoded as JSON: %v", err)
		}
		r.body, r.hasBody = data, true
		if r.headers.Get("Content-Type") == "" {
			r.headers.Set("Content-Type", "application/json")
		}
	}

	// method
	def := http.MethodGet
	if r.hasBody {
		def = http.MethodPost
	}
	m, err := cfg.str("method", def)
	if err != nil {
		return nil, err
	}
	r.method = strings.ToUpper(strings.TrimSpace(m))
	if !isToken(r.method) {
		return nil, cfg.errorf("method", "%q is not a valid HTTP method", m)
	}

	// timeout
	if r.timeout, r.timeoutSet, err = cfg.seconds("timeout_seconds"); err != nil {
		return nil, err
	} else if !r.timeoutSet {
		r.timeout = timeout
	}

	// response size
	r.maxBytes = maxBytes
	if n, set, err := cfg.number("max_response_bytes"); err != nil {
		return nil, err
	} else if set {
		if n < 1 || n != math.Trunc(n) {
			return nil, cfg.errorf("max_response_bytes", "must be a positive whole number, got %v", n)
		}
		if n > float64(maxBytes) {
			return nil, cfg.errorf("max_response_bytes", "%v exceeds this process's limit of %d bytes", n, maxBytes)
		}
		r.maxBytes = int64(n)
	}

	// redirects
	if r.redirects, err = cfg.str("redirects", redirectsSameOrigin); err != nil {
		return nil, err
	}
	switch r.redirects {
	case redirectsSameOrigin, redirectsNone, redirectsAny:
	default:
		return nil, cfg.errorf("redirects", "must be %q, %q or %q, got %s",
			redirectsSameOrigin, redirectsNone, redirectsAny, describe(r.redirects))
	}

	// destination allow-list
	if v, ok := cfg.get("allowed_hosts"); ok {
		list, isList := asList(v)
		if !isList {
			return nil, cfg.errorf("allowed_hosts", "must be a list of host names, got %s", typeName(v))
		}
		r.allowed = []hostPattern{}
		for i, e := range list {
			p, isStr := e.(string)
			hp, perr := parseHostPattern(p)
			if !isStr || perr != nil {
				return nil, cfg.errorf(fmt.Sprintf("allowed_hosts[%d]", i), "must be a host name, *.domain or either with :port, got %s", describe(e))
			}
			r.allowed = append(r.allowed, hp)
		}
	}

	// status overrides
	for _, o := range []struct {
		key string
		set *map[int]bool
	}{{"permanent_statuses", &r.permanent}, {"retryable_statuses", &r.retryable}} {
		codes, err := cfg.intList(o.key)
		if err != nil {
			return nil, err
		}
		*o.set = make(map[int]bool, len(codes))
		for _, c := range codes {
			if c < 100 || c > 599 {
				return nil, cfg.errorf(o.key, "%d is not an HTTP status code", c)
			}
			(*o.set)[c] = true
		}
	}
	for c := range r.permanent {
		if r.retryable[c] {
			return nil, cfg.errorf("retryable_statuses", "status %d is also listed in permanent_statuses", c)
		}
	}

	if r.expectJSON, err = cfg.boolean("expect_json", false); err != nil {
		return nil, err
	}
	if r.expectJSON && r.headers.Get("Accept") == "" {
		r.headers.Set("Accept", "application/json")
	}
	return r, nil
}

// redactURL renders u without userinfo, query string or fragment.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.ForceQuery = false
	c.Fragment = ""
	c.RawFragment = ""
	return c.String()
}

// isToken reports whether s is an RFC 9110 token (a header name or method).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
