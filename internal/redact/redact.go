// Package redact hides the passwords of database connection strings in
// messages and logs. It is the one place that knows every form pgx accepts:
//
//   - URLs (postgres://, postgresql://, or any other scheme a user may pass
//     by mistake) with a password in the userinfo
//     (postgres://user:secret@host/db, several hosts included) or in the
//     query (?password=secret, ?sslpassword=secret);
//   - keyword/value strings (host=db user=u password=secret), values quoted
//     or not, with backslash escapes, spaces around "=" allowed.
//
// SQLite URLs and paths (sqlite:PATH, file:PATH, a bare path) hold no
// password and are returned unchanged.
package redact

import (
	"net/url"
	"slices"
	"strings"
)

// Mask replaces every password.
const Mask = "xxxxx"

// secretKeys are the parameters whose values are secret (compared without
// case).
var secretKeys = []string{"password", "sslpassword"}

func isSecretKey(k string) bool {
	k = strings.ToLower(strings.TrimSpace(k))
	if u, err := url.QueryUnescape(k); err == nil {
		k = u
	}
	return slices.Contains(secretKeys, k)
}

// DSN returns dsn with every password replaced by Mask, the rest as given.
func DSN(dsn string) string {
	out, _ := scan(dsn)
	return out
}

// Secrets returns the passwords dsn holds, as written and decoded.
func Secrets(dsn string) []string {
	_, secrets := scan(dsn)
	return secrets
}

// isURL reports whether dsn is a URL: pgx reads postgres:// and
// postgresql:// ones, and a URL of any other scheme (mysql://user:pw@...)
// is masked the same way before an error message quotes it.
func isURL(dsn string) bool {
	i := strings.Index(dsn, "://")
	if i <= 0 {
		return false
	}
	for j, c := range dsn[:i] {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (j == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// isSQLite reports whether dsn names a SQLite database (no password).
func isSQLite(dsn string) bool {
	return strings.HasPrefix(dsn, "sqlite:") || strings.HasPrefix(dsn, "file:")
}

func scan(dsn string) (string, []string) {
	switch {
	case isSQLite(dsn):
		return dsn, nil
	case isURL(dsn):
		return scanURL(dsn)
	case strings.Contains(dsn, "="):
		return scanKeywordValue(dsn)
	}
	return dsn, nil
}

// scanURL masks the userinfo password and the secret query parameters. It
// works on the text, not url.Parse, so that URLs url.Parse refuses (several
// hosts, bad escapes: exactly those whose errors get printed) are masked
// too.
func scanURL(dsn string) (string, []string) {
	var secrets []string
	schemeEnd := strings.Index(dsn, "://") + 3
	rest := dsn[schemeEnd:]
	queryAt := strings.IndexAny(rest, "?#")
	authEnd := len(rest)
	if queryAt >= 0 {
		authEnd = queryAt
	}
	at := strings.LastIndex(rest[:authEnd], "@")
	if at < 0 && queryAt >= 0 {
		// A password holding "?" or "#": the userinfo ends at a later "@",
		// before any "/".
		if i := strings.LastIndex(rest, "@"); i >= 0 && !strings.Contains(rest[:i], "/") {
			at = i
		}
	}
	var b strings.Builder
	b.WriteString(dsn[:schemeEnd])
	if at >= 0 {
		userinfo := rest[:at]
		if colon := strings.Index(userinfo, ":"); colon >= 0 {
			secrets = addSecret(secrets, userinfo[colon+1:])
			b.WriteString(userinfo[:colon+1])
			b.WriteString(Mask)
		} else {
			b.WriteString(userinfo)
		}
		rest = rest[at:]
	}
	queryAt = strings.Index(rest, "?")
	if queryAt < 0 {
		b.WriteString(rest)
		return b.String(), secrets
	}
	b.WriteString(rest[:queryAt+1])
	query, fragment, hasFragment := strings.Cut(rest[queryAt+1:], "#")
	for i, pair := range strings.Split(query, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		k, v, hasValue := strings.Cut(pair, "=")
		if hasValue && isSecretKey(k) {
			secrets = addSecret(secrets, v)
			b.WriteString(k + "=" + Mask)
			continue
		}
		b.WriteString(pair)
	}
	if hasFragment {
		b.WriteString("#" + fragment)
	}
	return b.String(), secrets
}

// scanKeywordValue masks secret values of a keyword/value string the way
// pgx reads it: keywords, optional spaces, "=", optional spaces, then a
// value that is single-quoted (backslash escapes, ends at the closing
// quote) or bare (backslash escapes, ends at a space). A value left open
// (an unterminated quote) is masked to the end.
func scanKeywordValue(dsn string) (string, []string) {
	var (
		b       strings.Builder
		secrets []string
		i       int
	)
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	for i < len(dsn) {
		// Spaces and the keyword, copied.
		start := i
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		kStart := i
		for i < len(dsn) && dsn[i] != '=' && !isSpace(dsn[i]) {
			i++
		}
		key := dsn[kStart:i]
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		if i >= len(dsn) || dsn[i] != '=' {
			// Not keyword=value: copy up to here and go on.
			b.WriteString(dsn[start:i])
			if i == kStart { // nothing consumed
				if i < len(dsn) {
					b.WriteByte(dsn[i])
				}
				i++
			}
			continue
		}
		i++ // =
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		b.WriteString(dsn[start:i])
		vStart := i
		var value strings.Builder
		closed := true
		if i < len(dsn) && dsn[i] == '\'' {
			i++
			closed = false
			for i < len(dsn) {
				c := dsn[i]
				if c == '\\' && i+1 < len(dsn) {
					value.WriteByte(dsn[i+1])
					i += 2
					continue
				}
				i++
				if c == '\'' {
					closed = true
					break
				}
				value.WriteByte(c)
			}
		} else {
			for i < len(dsn) && !isSpace(dsn[i]) {
				if dsn[i] == '\\' && i+1 < len(dsn) {
					i++
				}
				value.WriteByte(dsn[i])
				i++
			}
		}
		raw := dsn[vStart:i]
		if isSecretKey(key) || !closed {
			secrets = addSecret(addSecret(secrets, raw), value.String())
			b.WriteString(Mask)
			if !closed {
				break
			}
			continue
		}
		b.WriteString(raw)
	}
	return b.String(), secrets
}

// addSecret adds s, and its URL-decoded and quote-stripped forms, to list.
func addSecret(list []string, s string) []string {
	add := func(v string) {
		if v != "" && !slices.Contains(list, v) {
			list = append(list, v)
		}
	}
	add(s)
	if u, err := url.PathUnescape(s); err == nil {
		add(u)
	}
	if u, err := url.QueryUnescape(s); err == nil {
		add(u)
	}
	add(strings.Trim(s, "'"))
	return list
}

// minScrubLen is the shortest secret Text replaces wherever it appears in a
// message: shorter ones would mangle unrelated words, and are masked only
// where the connection string itself appears.
const minScrubLen = 3

// Text returns msg with the connection string dsn, and every password it
// holds, masked wherever they appear: for messages that quote a connection
// string, such as errors of the database driver or of url.Parse.
func Text(msg, dsn string) string {
	if dsn == "" {
		return msg
	}
	masked, secrets := scan(dsn)
	if len(secrets) == 0 {
		return msg
	}
	msg = strings.ReplaceAll(msg, dsn, masked)
	// Longest first, so that a secret containing another is masked whole.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, s := range secrets {
		if len(s) >= minScrubLen {
			msg = strings.ReplaceAll(msg, s, Mask)
			if q := url.QueryEscape(s); q != s {
				msg = strings.ReplaceAll(msg, q, Mask)
			}
			if q := url.PathEscape(s); q != s {
				msg = strings.ReplaceAll(msg, q, Mask)
			}
		}
	}
	return msg
}

// Error returns err with a message that holds no password of dsn (see
// Text); errors.Is and errors.As still see err. Nil stays nil.
func Error(err error, dsn string) error {
	if err == nil {
		return nil
	}
	msg := Text(err.Error(), dsn)
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Unwrap() error { return e.err }
