package condition

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEval(t *testing.T) {
	t.Parallel()
	ctx := json.RawMessage(`{"amount": 250, "country": "FR", "coupon": null, "big": 12345678901234567890, "items": [1, 2, 3]}`)
	results := map[string]json.RawMessage{
		"check_fraud": json.RawMessage(`{"score": 0.2, "flags": []}`),
		"reserve":     json.RawMessage(`"ok"`),
		"empty":       nil,
	}
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{`context.amount > 100`, true},
		{`context.amount > 100 && results.check_fraud.score < 0.5`, true},
		{`results.check_fraud.score >= 0.5`, false},
		{`context.country in ["DE", "FR"]`, true},
		{`has(context.coupon) && context.coupon != null`, false},
		{`results.reserve == "ok"`, true},
		{`size(context.items) == 3`, true},
		{`size(results.check_fraud.flags) == 0`, true},
		{`results.empty == null`, true},
		{`"check_fraud" in results`, true},
		{`true`, true},
	} {
		c, err := Compile(tc.expr)
		require.NoError(t, err, tc.expr)
		got, err := c.Eval(ctx, results)
		require.NoError(t, err, tc.expr)
		require.Equal(t, tc.want, got, tc.expr)
		require.Equal(t, tc.expr, c.String())
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ expr, want string }{
		{``, "empty expression"},
		{`context.amount >`, "Syntax error"},
		{`1 + 2`, "must be a boolean, it is int"},
		{`"yes"`, "must be a boolean, it is string"},
		{`nosuchvar > 1`, "undeclared reference to 'nosuchvar'"},
		{strings.Repeat("true && ", 600) + "true", "more than 4096"},
	} {
		_, err := Compile(tc.expr)
		require.Error(t, err, tc.expr)
		require.Contains(t, err.Error(), tc.want, tc.expr)
	}
}

func TestEvalErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expr    string
		ctx     string
		results map[string]json.RawMessage
		want    string
	}{
		{`results.missing.score > 1`, `{}`, map[string]json.RawMessage{}, "no such key: missing"},
		{`context.amount > 1`, `{"amount": "many"}`, nil, "no such overload"},
		{`context.flag`, `{"flag": 3}`, nil, "not a boolean"},
		{`context.n > 1`, `{"n": 1,}`, nil, "task context"},
		// A comprehension over a large list exceeds the cost limit.
		{`context.xs.all(a, context.xs.all(b, a + b >= 0))`, `{"xs": [` + strings.TrimSuffix(strings.Repeat("1,", 500), ",") + `]}`, nil, "cost limit"},
	} {
		c, err := Compile(tc.expr)
		require.NoError(t, err, tc.expr)
		_, err = c.Eval(json.RawMessage(tc.ctx), tc.results)
		require.Error(t, err, tc.expr)
		require.Contains(t, err.Error(), tc.want, tc.expr)
		require.Contains(t, err.Error(), tc.expr)
	}
}
