package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
)

// authorize checks the bearer token of a /v1 request. It compares SHA-256
// digests in constant time, so neither the token's content nor its length
// leaks through timing.
func (s *server) authorize(w http.ResponseWriter, r *http.Request) *apiError {
	if s.token == nil {
		return nil
	}
	scheme, given, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(given) == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tasker"`)
		return &apiError{status: http.StatusUnauthorized, code: CodeUnauthorized,
			message: `missing bearer token: send "Authorization: Bearer <token>"`}
	}
	want := sha256.Sum256(s.token)
	got := sha256.Sum256([]byte(strings.TrimSpace(given)))
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tasker", error="invalid_token"`)
		return &apiError{status: http.StatusUnauthorized, code: CodeUnauthorized, message: "invalid bearer token"}
	}
	return nil
}

// RequireToken reports whether a listen address needs a token: anything
// that is not loopback (127.0.0.0/8, ::1, localhost) does. The address may
// carry a port ("127.0.0.1:8080", "[::1]:8080", "localhost:8080") or not;
// an empty host (":8080") listens on every interface and needs a token, and
// so does anything that is not a loopback IP or the name localhost (host
// names are not resolved, Unix socket paths are not special-cased).
func RequireToken(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	} else if strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]") {
		host = addr[1 : len(addr)-1]
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
