package builtin

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestExpand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   any
		want string // JSON of the expected value
		err  []string
	}{
		{name: "plain string", in: "hello", want: `"hello"`},
		{name: "non-string scalar", in: 3.5, want: `3.5`},
		{name: "typed number", in: "${context.order.id}", want: `1001`},
		{name: "big number keeps precision", in: "${context.big}", want: `12345678901234567890`},
		{name: "typed object", in: "${context.order}", want: `{"id":1001,"sku":"A-17","tags":["x","y"]}`},
		{name: "typed array", in: "${context.order.tags}", want: `["x","y"]`},
		{name: "typed null", in: "${context.nothing}", want: `null`},
		{name: "whole context", in: "${context}", want: `{"order":{"id":1001,"sku":"A-17","tags":["x","y"]},"customer":"ann","big":12345678901234567890,"nothing":null}`},
		{name: "array index", in: "${context.order.tags.1}", want: `"y"`},
		{name: "dependency", in: "${steps.price.lines.0.sku}", want: `"A-17"`},
		{name: "dependency number", in: "${steps.price.total}", want: `19.5`},
		{name: "whole dependency", in: "${steps.auth}", want: `{"token":"tok-123"}`},
		{name: "inputs", in: "${inputs.limit}", want: `5`},
		{name: "step attempt", in: "${step.attempt}", want: `1`},
		{name: "step name", in: "${step.name}", want: `"s"`},
		{name: "step max attempts", in: "${step.max_attempts}", want: `3`},
		{name: "task id", in: "${task.id}", want: `42`},
		{name: "task fields", in: "${task.namespace}/${task.name}@${task.version}", want: `"ns/orders@1.2.3"`},
		{name: "spaces inside braces", in: "${ context.customer }", want: `"ann"`},
		{name: "interpolated number", in: "/orders/${context.order.id}/x", want: `"/orders/1001/x"`},
		{name: "interpolated object", in: "o=${context.order}", want: `"o={\"id\":1001,\"sku\":\"A-17\",\"tags\":[\"x\",\"y\"]}"`},
		{name: "interpolated null", in: "[${context.nothing}]", want: `"[]"`},
		{name: "two references", in: "${context.customer}${task.id}", want: `"ann42"`},
		{name: "escape", in: "$${context.customer} is ${context.customer}", want: `"${context.customer} is ann"`},
		{name: "escape alone", in: "$${HOME}", want: `"${HOME}"`},
		{name: "dollar without brace", in: "costs $5 {ok}", want: `"costs $5 {ok}"`},
		{name: "recursive map and list", in: map[string]any{
			"a": []any{"${context.order.id}", map[string]any{"b": "${steps.auth.token}"}},
			"n": 1,
		}, want: `{"a":[1001,{"b":"tok-123"}],"n":1}`},
		{name: "typed string slice", in: []string{"${context.customer}", "x"}, want: `["ann","x"]`},

		{name: "missing key", in: "${context.order.nope}", err: []string{"${context.order.nope}", `no key "nope"`, `step "s"`, "handler_config.test"}},
		{name: "missing key in text", in: "id=${context.missing}", err: []string{"${context.missing}", `no key "missing"`}},
		{name: "index out of range", in: "${context.order.tags.5}", err: []string{"out of range"}},
		{name: "bad index", in: "${context.order.tags.x}", err: []string{"not an array index"}},
		{name: "negative index", in: "${context.order.tags.-1}", err: []string{"not an array index"}},
		{name: "index into scalar", in: "${context.customer.x}", err: []string{"cannot index a string"}},
		{name: "index into null", in: "${context.nothing.x}", err: []string{"cannot index null"}},
		{name: "unknown parent", in: "${steps.nope.x}", err: []string{`step "nope" is not a parent`, "auth, price"}},
		{name: "steps without name", in: "${steps}", err: []string{"name a parent step"}},
		{name: "unknown root", in: "${HOME}", err: []string{`unknown root "HOME"`}},
		{name: "unknown step field", in: "${step.color}", err: []string{`unknown field "color"`}},
		{name: "task field with path", in: "${task.id.x}", err: []string{"one field"}},
		{name: "empty reference", in: "${}", err: []string{"empty reference"}},
		{name: "empty segment", in: "${context..a}", err: []string{"empty path segment"}},
		{name: "unterminated", in: "a ${context.a", err: []string{"missing closing"}},
		{name: "error inside list", in: []any{"ok", "${context.zzz}"}, err: []string{"handler_config.test[1]"}},
		{name: "error inside map", in: map[string]any{"k": "${context.zzz}"}, err: []string{"handler_config.test.k"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x := newExpander("tasker:test", newStep("s", nil))
			got, err := x.expand(tc.in, "handler_config.test")
			if tc.err != nil {
				requirePermanent(t, err)
				for _, s := range tc.err {
					require.Contains(t, err.Error(), s)
				}
				return
			}
			require.NoError(t, err)
			b, err := json.Marshal(got)
			require.NoError(t, err)
			require.JSONEq(t, tc.want, string(b))
		})
	}
}

func TestExpandBadDocuments(t *testing.T) {
	t.Parallel()
	step := newStep("s", nil)
	step.Context = json.RawMessage(`{not json`)
	step.DependencyResults["broken"] = json.RawMessage(`[1,`)
	x := newExpander("tasker:test", step)
	_, err := x.expand("${context.a}", "handler_config.url")
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "task context is not valid JSON")
	_, err = x.expand("${steps.broken.0}", "handler_config.url")
	requirePermanent(t, err)
	require.Contains(t, err.Error(), `results of step "broken" are not valid JSON`)

	step.Context = nil
	x = newExpander("tasker:test", step)
	v, err := x.expand("${context}", "handler_config.url")
	require.NoError(t, err)
	require.Nil(t, v)
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"  ", 0, false},
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{" 5 ", 5 * time.Second, true},
		{"99999999999999999999999", maxRetryAfter, true},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"Sat, 01 Mar 2025 12:00:30 GMT", 30 * time.Second, true},
		{"Saturday, 01-Mar-25 12:01:00 GMT", time.Minute, true}, // RFC 850
		{"Sat Mar  1 12:00:10 2025", 10 * time.Second, true},    // asctime
		{"Sat, 01 Mar 2025 11:00:00 GMT", 0, true},              // in the past
		{"Sat, 01 Mar 2125 11:00:00 GMT", maxRetryAfter, true},  // absurdly far
	}
	for _, tc := range tests {
		got, ok := parseRetryAfter(tc.in, now)
		require.Equal(t, tc.ok, ok, "%q", tc.in)
		require.Equal(t, tc.want, got, "%q", tc.in)
	}
}

func TestConfigNumbersAreTolerant(t *testing.T) {
	t.Parallel()
	for _, v := range []any{2, int64(2), int32(2), uint8(2), 2.0, float32(2), json.Number("2"), "2"} {
		c := config{handler: "h", step: "s", m: map[string]any{"n": v, "l": []any{v, 3}}}
		n, ok, err := c.integer("n")
		require.NoError(t, err, "%T", v)
		require.True(t, ok)
		require.Equal(t, 2, n)
		l, err := c.intList("l")
		require.NoError(t, err, "%T", v)
		require.Equal(t, []int{2, 3}, l)
	}
	c := config{handler: "h", step: "s", m: map[string]any{"n": 2.5, "s": true, "l": []int{1, 2}, "b": "yes"}}
	_, _, err := c.integer("n")
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "handler_config.n")
	_, _, err = c.number("s")
	requirePermanent(t, err)
	require.Contains(t, err.Error(), `h: step "s": handler_config.s: must be a number, got a boolean`)
	l, err := c.intList("l")
	require.NoError(t, err)
	require.Equal(t, []int{1, 2}, l)
	_, err = c.boolean("b", false)
	requirePermanent(t, err)
}
