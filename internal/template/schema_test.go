package template

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tasker-systems/tasker/taskertype"
)

const schemaYAML = `name: order
namespace_name: shop
version: 1.0.0
schema:
  type: object
  required: [order_id, customer]
  properties:
    order_id: {type: integer, minimum: 1}
    email: {type: string, format: email}
    customer:
      type: object
      required: [name]
      properties:
        name: {type: string, minLength: 1}
    items:
      type: array
      items: {type: object, required: [sku], properties: {qty: {type: integer}}}
step_templates: [{name: a, handler_class: X}]
`

// violations validates ctx and returns the reported violations (nil when
// valid).
func violations(t *testing.T, tm *Template, ctx []byte) []taskertype.ContextViolation {
	t.Helper()
	err := tm.ValidateContext(ctx)
	if err == nil {
		return nil
	}
	var cve *taskertype.ContextValidationError
	require.ErrorAs(t, err, &cve)
	require.ErrorIs(t, err, taskertype.ErrInvalidContext)
	require.Equal(t, tm.Key(), cve.Template)
	require.NotEmpty(t, cve.Violations)
	return cve.Violations
}

func paths(vs []taskertype.ContextViolation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Path)
	}
	return out
}

func TestValidateContext(t *testing.T) {
	t.Parallel()
	tm := mustParse(t, schemaYAML)
	cases := []struct {
		name  string
		ctx   string
		paths []string // nil: valid
		msgs  []string // substrings, one per path (optional)
	}{
		{name: "valid", ctx: `{"order_id": 3, "customer": {"name": "Ada"}, "email": "ada@example.com"}`},
		{name: "valid with extra fields", ctx: `{"order_id": 3, "customer": {"name": "Ada"}, "other": [1, 2]}`},
		{
			name:  "every failing path at once",
			ctx:   `{"order_id": "x", "email": "not-an-email", "customer": {"name": ""}, "items": [{"qty": 1.5}, {"sku": "a"}]}`,
			paths: []string{"/customer/name", "/email", "/items/0/qty", "/items/0/sku", "/order_id"},
			msgs:  []string{"minLength", "email", "want integer", `missing required property "sku"`, "want integer"},
		},
		{
			name:  "missing required properties are reported at their own paths",
			ctx:   `{}`,
			paths: []string{"/customer", "/order_id"},
			msgs:  []string{`missing required property "customer"`, `missing required property "order_id"`},
		},
		{name: "empty context means {}", ctx: ``, paths: []string{"/customer", "/order_id"}},
		{name: "whitespace context means {}", ctx: " \n", paths: []string{"/customer", "/order_id"}},
		{name: "invalid JSON", ctx: `{"order_id": `, paths: []string{""}, msgs: []string{"invalid JSON"}},
		{name: "trailing data", ctx: `{} {}`, paths: []string{""}, msgs: []string{"invalid JSON"}},
		{name: "not an object", ctx: `[1, 2]`, paths: []string{""}, msgs: []string{"must be a JSON object, got an array"}},
		{name: "big integers keep their precision", ctx: `{"order_id": 12345678901234567890123, "customer": {"name": "A"}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vs := violations(t, tm, []byte(tc.ctx))
			require.Equal(t, tc.paths, paths(vs), "%+v", vs)
			for i, m := range tc.msgs {
				require.Contains(t, vs[i].Message, m, "%+v", vs[i])
			}
		})
	}
	require.Equal(t, []string{"/customer", "/order_id"}, paths(violations(t, tm, nil)), "nil means {}")
}

func TestValidateContextSize(t *testing.T) {
	t.Parallel()
	tm := mustParse(t, "name: free\nstep_templates: [{name: a, handler_class: X}]\n")

	// Exactly at the limit is fine.
	pad := MaxContextBytes - len(`{"p":""}`)
	ok := []byte(`{"p":"` + string(bytes.Repeat([]byte("a"), pad)) + `"}`)
	require.Len(t, ok, MaxContextBytes)
	require.NoError(t, tm.ValidateContext(ok))

	big := append([]byte(`{"p":"a`), ok[6:]...)
	require.Len(t, big, MaxContextBytes+1)
	vs := violations(t, tm, big)
	require.Len(t, vs, 1)
	require.Equal(t, "", vs[0].Path)
	require.Contains(t, vs[0].Message, "1048577 bytes")
	require.Contains(t, vs[0].Message, "limit of 1048576 bytes")
}

func TestValidateContextWithoutSchema(t *testing.T) {
	t.Parallel()
	tm := mustParse(t, "name: free\nstep_templates: [{name: a, handler_class: X}]\n")
	require.NoError(t, tm.ValidateContext(nil))
	require.NoError(t, tm.ValidateContext([]byte(`{"anything": [1, {"goes": true}]}`)))
	for _, ctx := range []string{`"text"`, `42`, `null`, `[]`, `{`} {
		vs := violations(t, tm, []byte(ctx))
		require.Equal(t, []string{""}, paths(vs), ctx)
	}
}

func TestValidateContextBooleanSchema(t *testing.T) {
	t.Parallel()
	tm := mustParse(t, "name: closed\nschema: false\nstep_templates: [{name: a, handler_class: X}]\n")
	vs := violations(t, tm, []byte(`{}`))
	require.Equal(t, []string{""}, paths(vs))
}

func TestValidateContextRefsInsideSchema(t *testing.T) {
	t.Parallel()
	tm := mustParse(t, `name: refs
schema:
  type: object
  properties:
    home: {$ref: "#/$defs/addr"}
    work: {$ref: "#/$defs/addr"}
  $defs:
    addr: {type: object, required: [city]}
step_templates: [{name: a, handler_class: X}]
`)
	vs := violations(t, tm, []byte(`{"home": {}, "work": {"city": 3}}`))
	require.Equal(t, []string{"/home/city"}, paths(vs))
}
