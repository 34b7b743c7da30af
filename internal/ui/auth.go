package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// SessionCookie is the name of the dashboard's session cookie.
const SessionCookie = "tasker_ui_session"

// SessionTTL is how long a dashboard session lasts after its login.
const SessionTTL = 12 * time.Hour

// CSRFField is the form field (and CSRFHeader the request header) that
// carries a session's CSRF token on every POST.
const (
	CSRFField  = "csrf"
	CSRFHeader = "X-CSRF-Token"
)

// session is the content of the session cookie. The cookie is the JSON
// document, base64url, a dot, then its HMAC-SHA256 under the server's
// session key: the server keeps no session table.
type session struct {
	// ID is random per session; the CSRF token is derived from it.
	ID string `json:"sid"`
	// Auth is true after a login with the API token.
	Auth bool `json:"auth,omitempty"`
	// Who names the operator (given at login), recorded as the actor.
	Who string `json:"who,omitempty"`
	// Exp is the end of the session, Unix seconds.
	Exp int64 `json:"exp"`
}

// sessionKey derives the cookie signing key. With a token the key is
// derived from it, so sessions survive restarts and are valid on every
// server sharing the token, and changing the token ends them all; without
// one it is random per process.
func sessionKey(token string) []byte {
	if token == "" {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		return k
	}
	sum := sha256.Sum256([]byte("tasker-ui-session-v1\x00" + token))
	return sum[:]
}

func (u *UI) sign(b []byte) []byte {
	m := hmac.New(sha256.New, u.key)
	m.Write(b)
	return m.Sum(nil)
}

func (u *UI) encodeSession(s *session) string {
	b, _ := json.Marshal(s)
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(u.sign(b))
}

// readSession returns the request's valid, unexpired session, or nil.
func (u *UI) readSession(r *http.Request) *session {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil
	}
	body, mac, ok := strings.Cut(c.Value, ".")
	if !ok {
		return nil
	}
	b, err1 := base64.RawURLEncoding.DecodeString(body)
	m, err2 := base64.RawURLEncoding.DecodeString(mac)
	if err1 != nil || err2 != nil || !hmac.Equal(m, u.sign(b)) {
		return nil
	}
	var s session
	if json.Unmarshal(b, &s) != nil || s.ID == "" || time.Now().Unix() >= s.Exp {
		return nil
	}
	if u.token != nil && !s.Auth {
		// A session made before a token was configured.
		return &session{ID: s.ID, Exp: s.Exp}
	}
	return &s
}

func newSessionID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// setSession writes the session cookie: HttpOnly, SameSite=Strict, Secure
// unless Options.InsecureCookie, scoped to /ui.
func (u *UI) setSession(w http.ResponseWriter, s *session) {
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: u.encodeSession(s), Path: "/ui", MaxAge: int(time.Until(time.Unix(s.Exp, 0)).Seconds()),
		HttpOnly: true, Secure: !u.opts.InsecureCookie, SameSite: http.SameSiteStrictMode,
	})
}

func (u *UI) clearSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/ui", MaxAge: -1,
		HttpOnly: true, Secure: !u.opts.InsecureCookie, SameSite: http.SameSiteStrictMode})
}

// csrfToken is the session's CSRF token.
func (u *UI) csrfToken(s *session) string {
	if s == nil {
		return ""
	}
	return hex.EncodeToString(u.sign([]byte("csrf\x00" + s.ID)))[:40]
}

// checkCSRF verifies a POST: the session's token in the form field or
// header, and no cross-site origin (the Origin's host must be the request's
// Host, or the X-Forwarded-Host a reverse proxy set).
func (u *UI) checkCSRF(r *http.Request, s *session) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		ou, err := url.Parse(o)
		if err != nil || o == "null" {
			return false
		}
		fwd, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Host"), ",")
		if !strings.EqualFold(ou.Host, r.Host) && !strings.EqualFold(ou.Host, strings.TrimSpace(fwd)) {
			return false
		}
	}
	if s == nil {
		return false
	}
	given := r.Header.Get(CSRFHeader)
	if given == "" {
		given = r.PostFormValue(CSRFField)
	}
	want := u.csrfToken(s)
	return given != "" && subtle.ConstantTimeCompare([]byte(given), []byte(want)) == 1
}

// bearerOK reports a valid "Authorization: Bearer" header (scripts and
// proxies may use the dashboard's JSON like the API).
func (u *UI) bearerOK(r *http.Request) bool {
	scheme, given, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return u.tokenOK(strings.TrimSpace(given))
}

// tokenOK compares a token with the API token in constant time.
func (u *UI) tokenOK(given string) bool {
	if u.token == nil || given == "" {
		return false
	}
	want := sha256.Sum256(u.token)
	got := sha256.Sum256([]byte(given))
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

// safeNext returns a local dashboard path to go to after the login.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/ui/"
	}
	return next
}
