package builtin

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// EnvHTTPAllowedHosts names the environment variable read when
// Options.HTTPAllowedHosts is nil: a comma-separated allow-list of the hosts
// tasker:http may reach, in the form of handler_config.allowed_hosts.
const EnvHTTPAllowedHosts = "TASKER_HTTP_ALLOWED_HOSTS"

// hostPattern is one entry of an allow-list: a host name or IP address, or
// "*.domain" (any subdomain of domain, not domain itself), or "*" (any
// host), optionally with a port ("" matches any port).
type hostPattern struct {
	host string // lower case, IPv6 without brackets
	port string
}

// parseHostPattern reads "host", "host:port", "[v6]", "[v6]:port",
// "*.domain" or "*" (each optionally with ":port").
func parseHostPattern(s string) (hostPattern, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || strings.ContainsAny(s, "/?#@ \t") {
		return hostPattern{}, errors.New("not a host")
	}
	host, port := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
		if port == "" || strings.Trim(port, "0123456789") != "" {
			return hostPattern{}, errors.New("bad port")
		}
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	}
	if host == "" || strings.Contains(host[1:], "*") || (strings.HasPrefix(host, "*") && host != "*" && !strings.HasPrefix(host, "*.")) {
		return hostPattern{}, errors.New("bad host")
	}
	return hostPattern{host: strings.TrimSuffix(host, "."), port: port}, nil
}

// parseHostList reads a comma-separated allow-list.
func parseHostList(s string) ([]hostPattern, error) {
	var out []hostPattern
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		p, err := parseHostPattern(f)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", strings.TrimSpace(f), err)
		}
		out = append(out, p)
	}
	return out, nil
}

// matches reports whether u's host and port are allowed by p.
func (p hostPattern) matches(u *url.URL) bool {
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if p.port != "" && p.port != effectivePort(u) {
		return false
	}
	switch {
	case p.host == "*":
		return true
	case strings.HasPrefix(p.host, "*."):
		return strings.HasSuffix(host, p.host[1:])
	}
	return host == p.host
}

// allowedBy reports whether u matches one of patterns; a nil list allows
// everything.
func allowedBy(patterns []hostPattern, u *url.URL) bool {
	if patterns == nil {
		return true
	}
	for _, p := range patterns {
		if p.matches(u) {
			return true
		}
	}
	return false
}

// effectivePort is u's port, or the scheme's default.
func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// sameOrigin reports whether a and b have the same scheme, host and port.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(strings.TrimSuffix(a.Hostname(), "."), strings.TrimSuffix(b.Hostname(), ".")) &&
		effectivePort(a) == effectivePort(b)
}

// checkHost refuses a destination outside the process's or the step's
// allow-list.
func (h *httpHandler) checkHost(r *httpRequest, u *url.URL) error {
	if !allowedBy(h.allowedHosts, u) {
		return fmt.Errorf("host %q is not in this process's allow-list (%s)", u.Host, EnvHTTPAllowedHosts)
	}
	if !allowedBy(r.allowed, u) {
		return fmt.Errorf("host %q is not in handler_config.allowed_hosts", u.Host)
	}
	return nil
}

// redirectError is a redirect the step's settings refuse: a permanent
// error.
type redirectError struct {
	msg string
}

func (e *redirectError) Error() string { return e.msg }

// redirectPolicy is the CheckRedirect of one attempt: it follows at most
// maxRedirects redirects, to the same origin only unless
// handler_config.redirects is "any" (none when it is "none"), each within the
// allow-lists, and it drops the step's own headers (handler_config.headers)
// from every request after the chain has left the original origin. Go
// already drops Authorization and Cookie across domains.
func (h *httpHandler) redirectPolicy(r *httpRequest) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		first := via[0].URL
		target := redactURL(req.URL)
		switch {
		case r.redirects == redirectsNone:
			return &redirectError{fmt.Sprintf("HTTP %d redirect to %s not followed (handler_config.redirects is %q)",
				req.Response.StatusCode, target, redirectsNone)}
		case len(via) > maxRedirects:
			return &redirectError{fmt.Sprintf("stopped after %d redirects", maxRedirects)}
		case r.redirects == redirectsSameOrigin && !sameOrigin(first, req.URL):
			return &redirectError{fmt.Sprintf("HTTP %d redirect to another host or port refused: %s "+
				"(set handler_config.redirects to %q to follow it)", req.Response.StatusCode, target, redirectsAny)}
		}
		if err := h.checkHost(r, req.URL); err != nil {
			return &redirectError{fmt.Sprintf("HTTP %d redirect to %s refused: %v", req.Response.StatusCode, target, err)}
		}
		left := !sameOrigin(first, req.URL)
		for _, v := range via[1:] {
			left = left || !sameOrigin(first, v.URL)
		}
		if left {
			for _, k := range r.custom {
				req.Header.Del(k)
			}
		}
		return nil
	}
}
