// Package jsonvalid checks that JSON documents and strings hold only what
// every supported database stores the same way, before anything is written.
//
// encoding/json is lenient where the databases are not: it replaces invalid
// UTF-8 and lone surrogate escapes with U+FFFD, keeps the last of duplicate
// keys and accepts numbers of any size. PostgreSQL's jsonb refuses \u0000,
// lone surrogates and numbers beyond its numeric type, and its text columns
// refuse NUL and invalid UTF-8, while SQLite stores all of them. Checking
// here, once, turns each of those into the same typed error on every
// database, for the HTTP API and the Go API alike.
//
// The limits (see the constants) are documented in docs/api.md.
package jsonvalid

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of a checked document. They sit well inside what PostgreSQL's
// jsonb accepts (a numeric has at most 131,072 digits before the decimal
// point and 16,383 after it; nesting is bounded by max_stack_depth, about
// 10,000 levels at the default 2 MB) and cover every float64 and int64.
const (
	// MaxNumberLen is the longest number literal accepted, in bytes.
	MaxNumberLen = 1000
	// MaxExponent bounds the exponent of a number literal: 1e1000 and
	// 1e-1000 are accepted, 1e1001 is not.
	MaxExponent = 1000
	// MaxDepth is the deepest nesting of arrays and objects accepted.
	MaxDepth = 1000
)

// Error is a value a database cannot store portably, or a malformed
// document. Pointer is the JSON pointer (RFC 6901) of the offending value
// ("" for the whole document); Offset is its byte offset in the document.
type Error struct {
	Pointer string
	Offset  int64
	Msg     string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Pointer == "" {
		return e.Msg
	}
	return e.Pointer + ": " + e.Msg
}

// Field returns the first element of the pointer: the top-level field of a
// request document ("" for the document itself).
func (e *Error) Field() string {
	p := strings.TrimPrefix(e.Pointer, "/")
	if p == e.Pointer || p == "" {
		return ""
	}
	f, _, _ := strings.Cut(p, "/")
	return unescapePointer(f)
}

// Messages of the checks, also used by callers that build their own errors.
const (
	msgUTF8      = "is not valid UTF-8"
	msgNUL       = "must not contain NUL (\\u0000)"
	msgSurrogate = "contains a lone UTF-16 surrogate escape (\\ud800-\\udfff not in a high-low pair)"
)

// CheckString refuses text a database cannot store: invalid UTF-8, and NUL,
// which PostgreSQL refuses in text and jsonb. The error's Pointer is empty.
func CheckString(s string) error {
	if !utf8.ValidString(s) {
		return &Error{Offset: int64(invalidUTF8At([]byte(s))), Msg: msgUTF8}
	}
	if i := strings.IndexByte(s, 0); i >= 0 {
		return &Error{Offset: int64(i), Msg: msgNUL}
	}
	return nil
}

// Check validates a whole JSON document: its syntax, then every string and
// key (valid UTF-8, no NUL, no lone surrogate escape), every number (at
// most MaxNumberLen bytes, exponent within ±MaxExponent), the nesting depth
// (MaxDepth) and that no object repeats a key. Raw bytes are checked before
// any decoding, since decoding would hide invalid UTF-8 and surrogates. An
// empty (or all-space) document is accepted: callers decide whether it is
// required.
func Check(doc []byte) error {
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil
	}
	// Syntax first, so that the scan below can assume a well-formed
	// document; encoding/json's scanner does not check UTF-8.
	if err := json.Unmarshal(doc, &json.RawMessage{}); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return &Error{Offset: se.Offset, Msg: fmt.Sprintf("invalid JSON at byte offset %d: %v", se.Offset, se)}
		}
		return &Error{Msg: "invalid JSON: " + err.Error()}
	}
	return CheckWellFormed(doc)
}

// CheckWellFormed is Check for a document already known to be valid JSON
// (encoded by encoding/json, or accepted by json.Valid): it skips the
// syntax pass. The engine checks every handler result with it.
func CheckWellFormed(doc []byte) error {
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil
	}
	s := scanner{data: doc}
	s.skipSpace()
	return s.value("", 0)
}

// scanner walks a syntactically valid document.
type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) fail(ptr string, at int, msg string) error {
	return &Error{Pointer: ptr, Offset: int64(at), Msg: msg}
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value checks the value at s.pos (spaces skipped) whose pointer is ptr.
func (s *scanner) value(ptr string, depth int) error {
	switch c := s.data[s.pos]; {
	case c == '{':
		if depth >= MaxDepth {
			return s.fail(ptr, s.pos, fmt.Sprintf("nests deeper than %d levels", MaxDepth))
		}
		return s.object(ptr, depth+1)
	case c == '[':
		if depth >= MaxDepth {
			return s.fail(ptr, s.pos, fmt.Sprintf("nests deeper than %d levels", MaxDepth))
		}
		return s.array(ptr, depth+1)
	case c == '"':
		_, err := s.str(ptr, false)
		return err
	case c == '-' || c >= '0' && c <= '9':
		return s.number(ptr)
	default: // true, false, null
		for s.pos < len(s.data) && s.data[s.pos] >= 'a' && s.data[s.pos] <= 'z' {
			s.pos++
		}
		return nil
	}
}

func (s *scanner) object(ptr string, depth int) error {
	s.pos++ // {
	s.skipSpace()
	if s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	seen := map[string]struct{}{}
	for {
		at := s.pos
		key, err := s.str(ptr, true)
		if err != nil {
			return err
		}
		child := ptr + "/" + escapePointer(key)
		if _, dup := seen[key]; dup {
			return s.fail(child, at, fmt.Sprintf("duplicate object key %q", key))
		}
		seen[key] = struct{}{}
		s.skipSpace()
		s.pos++ // :
		s.skipSpace()
		if err := s.value(child, depth); err != nil {
			return err
		}
		s.skipSpace()
		c := s.data[s.pos]
		s.pos++
		if c == '}' {
			return nil
		}
		s.skipSpace() // after ,
	}
}

func (s *scanner) array(ptr string, depth int) error {
	s.pos++ // [
	s.skipSpace()
	if s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		if err := s.value(ptr+"/"+strconv.Itoa(i), depth); err != nil {
			return err
		}
		s.skipSpace()
		c := s.data[s.pos]
		s.pos++
		if c == ']' {
			return nil
		}
		s.skipSpace()
	}
}

// str checks the string at s.pos and, for keys, returns it decoded. The
// pointer of a bad key is its object's.
func (s *scanner) str(ptr string, isKey bool) (string, error) {
	what := "string"
	if isKey {
		what = "object key"
	}
	s.pos++ // opening quote
	var b strings.Builder
	for {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return b.String(), nil
		case c == '\\':
			at := s.pos
			esc := s.data[s.pos+1]
			if esc != 'u' {
				if isKey {
					b.WriteByte(unescapeByte(esc))
				}
				s.pos += 2
				continue
			}
			r := hex4(s.data[s.pos+2 : s.pos+6])
			s.pos += 6
			switch {
			case r == 0:
				return "", s.fail(ptr, at, what+" "+msgNUL)
			case r >= 0xDC00 && r <= 0xDFFF:
				return "", s.fail(ptr, at, what+" "+msgSurrogate)
			case r >= 0xD800 && r <= 0xDBFF:
				if s.pos+6 > len(s.data) || s.data[s.pos] != '\\' || s.data[s.pos+1] != 'u' {
					return "", s.fail(ptr, at, what+" "+msgSurrogate)
				}
				lo := hex4(s.data[s.pos+2 : s.pos+6])
				if lo < 0xDC00 || lo > 0xDFFF {
					return "", s.fail(ptr, at, what+" "+msgSurrogate)
				}
				s.pos += 6
				r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
			}
			if isKey {
				b.WriteRune(r)
			}
		case c < utf8.RuneSelf:
			if isKey {
				b.WriteByte(c)
			}
			s.pos++
		default:
			r, n := utf8.DecodeRune(s.data[s.pos:])
			if r == utf8.RuneError && n <= 1 {
				return "", s.fail(ptr, s.pos, what+" "+msgUTF8)
			}
			if isKey {
				b.Write(s.data[s.pos : s.pos+n])
			}
			s.pos += n
		}
	}
}

func (s *scanner) number(ptr string) error {
	start := s.pos
	expAt := -1
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		if c == 'e' || c == 'E' {
			expAt = s.pos
		} else if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.') {
			break
		}
		s.pos++
	}
	lit := s.data[start:s.pos]
	if len(lit) > MaxNumberLen {
		return s.fail(ptr, start, fmt.Sprintf("number is %d characters long, more than the limit of %d", len(lit), MaxNumberLen))
	}
	if expAt >= 0 {
		exp := strings.TrimLeft(string(s.data[expAt+1:s.pos]), "+-")
		exp = strings.TrimLeft(exp, "0")
		if n, err := strconv.Atoi(exp); len(exp) > 9 || err == nil && n > MaxExponent {
			return s.fail(ptr, start, fmt.Sprintf("number %s has an exponent beyond ±%d", truncate(lit), MaxExponent))
		}
	}
	return nil
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:37]) + "..."
	}
	return string(b)
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

func unescapeByte(c byte) byte {
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return c // " \ /
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func unescapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
}

// CheckKeys refuses object keys of doc that name no field of dst's type
// exactly. encoding/json matches keys to struct fields case-insensitively
// ("NameSpace" sets Namespace), so a misspelled or miscased key would be
// accepted; CheckKeys walks doc alongside the type of dst (a pointer to a
// struct, usually) and reports the first key that is not a field name with
// the same case. Free-form values (json.RawMessage, interfaces, maps of
// them) are not walked. doc must be valid JSON.
func CheckKeys(doc []byte, dst any) error {
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil
	}
	return checkKeys(doc, reflect.TypeOf(dst), "")
}

var (
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

func checkKeys(doc []byte, t reflect.Type, ptr string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t == rawMessageType || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	doc = bytes.TrimSpace(doc)
	if bytes.Equal(doc, []byte("null")) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		var m map[string]json.RawMessage
		if json.Unmarshal(doc, &m) != nil {
			return nil // a type error the decoder reports
		}
		fields := jsonFields(t)
		for k, v := range m {
			ft, ok := fields[k]
			if !ok {
				return &Error{Pointer: ptr + "/" + escapePointer(k), Msg: fmt.Sprintf("unknown field %q", k)}
			}
			if err := checkKeys(v, ft, ptr+"/"+escapePointer(k)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		var a []json.RawMessage
		if json.Unmarshal(doc, &a) != nil {
			return nil
		}
		for i, v := range a {
			if err := checkKeys(v, t.Elem(), ptr+"/"+strconv.Itoa(i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		var m map[string]json.RawMessage
		if json.Unmarshal(doc, &m) != nil {
			return nil
		}
		for k, v := range m {
			if err := checkKeys(v, t.Elem(), ptr+"/"+escapePointer(k)); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonFields maps the JSON names of t's fields (embedded structs'
// promoted) to their types, as encoding/json names them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
