package jsonvalid

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	cases := []struct {
		name, doc, pointer, msg string
	}{
		{"valid", `{"a": [1, -2.5e10, "x\u00e9\ud83d\ude00", true, null, {"b": "\"\\/"}], "A": 1}`, "", ""},
		{"empty", ``, "", ""},
		{"largest exponent", `[1e1000, 1E-1000, 1e+0001000]`, "", ""},
		{"deepest", deep(MaxDepth), "", ""},
		{"syntax", `{"a": }`, "", "invalid JSON"},
		{"invalid UTF-8 in a value", "{\"k\": \"k\xc3(\"}", "/k", "not valid UTF-8"},
		{"invalid UTF-8 in a key", "{\"a\": {\"k\xfe\": 1}}", "/a", "object key is not valid UTF-8"},
		{"UTF-8 encoded surrogate", "[\"\xed\xa0\x80\"]", "/0", "not valid UTF-8"},
		{"NUL escape", `{"a": ["x", "\u0000"]}`, "/a/1", "NUL"},
		{"NUL escape in a key", `{"\u0000": 1}`, "", "object key must not contain NUL"},
		{"lone high surrogate", `{"a": "\ud800"}`, "/a", "surrogate"},
		{"high surrogate then text", `{"a": "\uD800x"}`, "/a", "surrogate"},
		{"high surrogate then another high", `{"a": "\ud800\ud800"}`, "/a", "surrogate"},
		{"lone low surrogate", `{"a": "\udc00"}`, "/a", "surrogate"},
		{"huge exponent", `{"n": 1e131072}`, "/n", "exponent"},
		{"tiny exponent", `{"n": 1e-1001}`, "/n", "exponent"},
		{"absurd exponent", `{"n": 1e99999999999999999999}`, "/n", "exponent"},
		{"many digits", `{"n": ` + strings.Repeat("9", MaxNumberLen+1) + `}`, "/n", "characters long"},
		{"too deep", deep(MaxDepth + 1), strings.Repeat("/0", MaxDepth), "deeper"},
		{"duplicate key", `{"a": {"b": 1, "b": 2}}`, "/a/b", "duplicate"},
		{"duplicate key by escape", `{"a": 1, "\u0061": 2}`, "/a", "duplicate"},
		{"pointer escaping", `{"a/b~": "\u0000"}`, "/a~1b~0", "NUL"},
	}
	for _, tc := range cases {
		err := Check([]byte(tc.doc))
		if tc.name != "syntax" {
			// Every other document is well-formed JSON: the check that
			// skips the syntax pass finds the same.
			if wf := CheckWellFormed([]byte(tc.doc)); fmt.Sprint(wf) != fmt.Sprint(err) {
				t.Errorf("%s: CheckWellFormed %v, Check %v", tc.name, wf, err)
			}
		}
		if tc.msg == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: got %v, want an *Error", tc.name, err)
			continue
		}
		if e.Pointer != tc.pointer || !strings.Contains(e.Msg, tc.msg) {
			t.Errorf("%s: got pointer %q message %q, want %q and %q", tc.name, e.Pointer, e.Msg, tc.pointer, tc.msg)
		}
	}
}

func TestErrorField(t *testing.T) {
	for ptr, want := range map[string]string{"": "", "/context/a": "context", "/tags/1": "tags", "/a~1b": "a/b"} {
		if got := (&Error{Pointer: ptr}).Field(); got != want {
			t.Errorf("Field of %q = %q, want %q", ptr, got, want)
		}
	}
}

func TestCheckString(t *testing.T) {
	if err := CheckString("ok é ☃"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"k\xc3(", "k\xfe(", "a\x00"} {
		if err := CheckString(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

type inner struct {
	Message string `json:"message"`
}

type embedded struct {
	Extra int `json:"extra"`
}

type outer struct {
	embedded
	Name    string                     `json:"name"`
	Items   []inner                    `json:"items"`
	ByName  map[string]*inner          `json:"by_name"`
	Free    json.RawMessage            `json:"free"`
	Any     map[string]json.RawMessage `json:"any"`
	Skipped string                     `json:"-"`
	Plain   int
}

func TestCheckKeys(t *testing.T) {
	ok := `{"name": "x", "extra": 1, "items": [{"message": "m"}], "by_name": {"K": {"message": "m"}, "n": null},
		"free": {"Anything": 1}, "any": {"X": {"Y": 2}}, "Plain": 1}`
	if err := CheckKeys([]byte(ok), &outer{}); err != nil {
		t.Fatal(err)
	}
	for doc, ptr := range map[string]string{
		`{"Name": "x"}`:                        "/Name",
		`{"NAME": "x"}`:                        "/NAME",
		`{"Extra": 1}`:                         "/Extra",
		`{"plain": 1}`:                         "/plain",
		`{"Skipped": "x"}`:                     "/Skipped",
		`{"items": [{}, {"Message": "m"}]}`:    "/items/1/Message",
		`{"by_name": {"k": {"messagE": "m"}}}`: "/by_name/k/messagE",
		`{"name": "x", "unknown": {"a": "b"}}`: "/unknown",
	} {
		err := CheckKeys([]byte(doc), &outer{})
		var e *Error
		if !errors.As(err, &e) || e.Pointer != ptr || !strings.Contains(e.Msg, "unknown field") {
			t.Errorf("%s: got %v, want unknown field at %s", doc, err, ptr)
		}
	}
}
