package template

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tasker-systems/tasker/taskertype"
)

// oneStep is a valid step list for templates that test something else.
const oneStep = "step_templates:\n  - {name: a, handler_class: X}\n"

// onlyError parses src and returns its single problem, failing unless
// Parse refused the template with exactly one.
func onlyError(t *testing.T, src string) *taskertype.TemplateError {
	t.Helper()
	tm, errs := Parse("limits.yml", []byte(src), "")
	require.Nil(t, tm)
	require.Len(t, errs, 1, "%v", errs)
	require.Equal(t, "limits.yml", errs[0].File)
	return errs[0]
}

func TestFileSizeLimit(t *testing.T) {
	t.Parallel()
	// A valid template padded with a comment to one byte over the limit.
	src := "name: big\n" + oneStep + "# "
	src += strings.Repeat("x", MaxFileBytes+1-len(src))
	e := onlyError(t, src)
	require.Equal(t, 0, e.Line)
	require.Contains(t, e.Msg, fmt.Sprintf("file is %d bytes, more than the limit of %d bytes", MaxFileBytes+1, MaxFileBytes))

	// At the limit it is read.
	_, errs := Parse("limits.yml", []byte(src[:MaxFileBytes]), "")
	require.Nil(t, errs)

	// LoadDir refuses the big file without reading it and still loads the
	// other one.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "big.yml"), []byte(src), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ok.yml"), []byte("name: ok\n"+oneStep), 0o600))
	reg, err := LoadDir(dir, "")
	var te taskertype.TemplateErrors
	require.ErrorAs(t, err, &te)
	require.Len(t, te, 1)
	require.Equal(t, filepath.Join(dir, "big.yml"), te[0].File)
	require.Contains(t, te[0].Msg, "more than the limit")
	_, err = reg.Lookup("", "ok", "")
	require.NoError(t, err)
}

func TestStepCountLimit(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("name: wide\nstep_templates:\n")
	for i := range MaxSteps + 1 {
		fmt.Fprintf(&b, "  - {name: s%d, handler_class: X}\n", i)
	}
	e := onlyError(t, b.String())
	require.Equal(t, "step_templates", e.Field)
	require.Equal(t, 3, e.Line)
	require.Contains(t, e.Msg, fmt.Sprintf("%d steps, more than the limit of %d", MaxSteps+1, MaxSteps))

	// The same number of overrides in one environment.
	var o strings.Builder
	o.WriteString("name: wide\n" + oneStep + "environments:\n  prod:\n    step_templates:\n")
	for range MaxSteps + 1 {
		o.WriteString("      - {name: a}\n")
	}
	e = onlyError(t, o.String())
	require.Equal(t, "environments.prod.step_templates", e.Field)
	require.Equal(t, 7, e.Line)

	// Overrides are counted over all environments: many environments
	// sharing one long list through an alias.
	o.Reset()
	o.WriteString("name: wide\n" + oneStep + "over: &o [" + strings.Repeat("{name: a}, ", MaxSteps/4-1) + "{name: a}]\nenvironments:\n")
	for i := range 100 {
		fmt.Fprintf(&o, "  e%d: {step_templates: *o}\n", i)
	}
	tm, errs := Parse("limits.yml", []byte(o.String()), "")
	require.Nil(t, tm)
	// The limit comes first, before the many other problems of such a file.
	require.Equal(t, "environments.e4.step_templates", errs[0].Field)
	require.Equal(t, 10, errs[0].Line)
	require.Contains(t, errs[0].Msg, fmt.Sprintf("override more than %d steps in all", MaxSteps))

	// Exactly MaxSteps is fine (a chain, so the graph check runs too).
	b.Reset()
	b.WriteString("name: wide\nstep_templates:\n  - {name: s0, handler_class: X}\n")
	for i := 1; i < MaxSteps; i++ {
		fmt.Fprintf(&b, "  - {name: s%d, handler_class: X, depends_on_step: s%d}\n", i, i-1)
	}
	tm, errs = Parse("limits.yml", []byte(b.String()), "")
	require.Nil(t, errs)
	require.Len(t, tm.Steps, MaxSteps)
}

// nestedSchema is a JSON Schema whose object properties nest levels deep
// (two JSON levels per property level), in flow style.
func nestedSchema(levels int) string {
	return strings.Repeat(`{"type": "object", "properties": {"a": `, levels) + "{}" + strings.Repeat("}}", levels)
}

func TestSchemaDepthLimit(t *testing.T) {
	t.Parallel()
	// The input: 3,000 levels (51 KB) took 121 s and 333 MB.
	src := "name: deep\n" + oneStep + "schema: " + nestedSchema(3000) + "\n"
	require.Greater(t, len(src), 100_000)
	e := onlyError(t, src)
	require.Equal(t, "schema", e.Field)
	require.Equal(t, 4, e.Line)
	require.Contains(t, e.Msg, fmt.Sprintf("nested more than %d levels deep", MaxNestingDepth))
	// The pointer names where the limit was crossed.
	require.Contains(t, e.Msg, `at "/properties/a/properties/a/`)

	// Block style, one line per level: the line is the deep mapping's.
	var b strings.Builder
	b.WriteString("name: deep\n" + oneStep + "schema:\n")
	for i := range MaxNestingDepth + 1 {
		fmt.Fprintf(&b, "%s  allOf:\n", strings.Repeat("    ", i))
		fmt.Fprintf(&b, "%s  -\n", strings.Repeat("    ", i))
	}
	fmt.Fprintf(&b, "%s  type: object\n", strings.Repeat("    ", MaxNestingDepth+1))
	e = onlyError(t, b.String())
	require.Equal(t, "schema", e.Field)
	require.Equal(t, 5+MaxNestingDepth, e.Line) // the mapping at level 65

	// Just inside the limit it compiles and validates.
	ok := "name: deep\n" + oneStep + "schema: " + nestedSchema(MaxNestingDepth/2-1) + "\n"
	tm, errs := Parse("limits.yml", []byte(ok), "")
	require.Nil(t, errs)
	require.NoError(t, tm.ValidateContext([]byte(`{"a": {"a": {}}}`)))

	// A template built in memory gets the same limit (Registry.Add and
	// ValidateContext of a template never added).
	mem := &Template{Name: "deep", Steps: []*StepTemplate{{Name: "a", HandlerClass: "X"}},
		Schema: json.RawMessage(nestedSchema(3000))}
	err := NewRegistry().Add(mem)
	var te taskertype.TemplateErrors
	require.ErrorAs(t, err, &te)
	require.Len(t, te, 1)
	require.Equal(t, "schema", te[0].Field)
	require.Contains(t, te[0].Msg, fmt.Sprintf("nested more than %d levels deep", MaxNestingDepth))
	var cv *taskertype.ContextValidationError
	require.ErrorAs(t, mem.ValidateContext(nil), &cv)
	require.Contains(t, cv.Error(), "nested more than")
}

func TestHandlerConfigDepthLimit(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("[", 500) + strings.Repeat("]", 500)
	e := onlyError(t, "name: deep\nstep_templates:\n  - name: a\n    handler_class: X\n    handler_config: {v: "+deep+"}\n")
	require.Equal(t, "step_templates[0].handler_config", e.Field)
	require.Equal(t, "a", e.Step)
	require.Equal(t, 5, e.Line)
	require.Contains(t, e.Msg, fmt.Sprintf("nested more than %d levels deep", MaxNestingDepth))

	// In memory: a config nested too deep, and one that contains itself.
	cfg := map[string]any{}
	cur := cfg
	for range MaxNestingDepth + 5 {
		next := map[string]any{}
		cur["k"] = next
		cur = next
	}
	self := map[string]any{}
	self["me"] = self
	for _, c := range []map[string]any{cfg, self} {
		err := NewRegistry().Add(&Template{Name: "deep", Steps: []*StepTemplate{{Name: "a", HandlerClass: "X", HandlerConfig: c}}})
		var te taskertype.TemplateErrors
		require.ErrorAs(t, err, &te)
		require.Len(t, te, 1)
		require.Equal(t, "step_templates[0].handler_config", te[0].Field)
		require.Equal(t, "a", te[0].Step)
	}
}

func TestSchemaRefCyclesRefusedAtLoad(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		schema string
		line   int
		at     string
	}{
		"two defs": {schema: `
  $ref: "#/$defs/a"
  $defs:
    a: {$ref: "#/$defs/b"}
    b: {allOf: [{$ref: "#/$defs/a"}]}
`, line: 7, at: "/$defs/a"},
		"root": {schema: `
  type: object
  anyOf: [{type: string}, {$ref: "#"}]
`, line: 5},
		"through not and if": {schema: `
  $defs:
    a: {not: {if: {$ref: "#/$defs/a"}}}
  properties: {x: {$ref: "#/$defs/a"}}
`, line: 6, at: "/$defs/a"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := onlyError(t, "name: cyc\n"+oneStep+"schema:"+tc.schema)
			require.Equal(t, "schema", e.Field)
			require.Equal(t, tc.line, e.Line)
			require.Contains(t, e.Msg, "$ref cycle")
			if tc.at != "" {
				require.Contains(t, e.Msg, "invalid JSON Schema at "+quote(tc.at))
			}
		})
	}

	// Recursion that moves into the value is not a cycle: a tree.
	tree := "name: tree\n" + oneStep + `schema:
  $ref: "#/$defs/node"
  $defs:
    node:
      type: object
      properties:
        value: {type: integer}
        children: {type: array, items: {$ref: "#/$defs/node"}}
`
	tm, errs := Parse("tree.yml", []byte(tree), "")
	require.Nil(t, errs)
	require.NoError(t, tm.ValidateContext([]byte(`{"value": 1, "children": [{"value": 2, "children": []}]}`)))
	require.Error(t, tm.ValidateContext([]byte(`{"value": 1, "children": [{"value": "x"}]}`)))

	// Registry.Add refuses the same cycle in a template built in memory.
	err := NewRegistry().Add(&Template{Name: "cyc", Steps: []*StepTemplate{{Name: "a", HandlerClass: "X"}},
		Schema: json.RawMessage(`{"$defs": {"a": {"$ref": "#/$defs/a"}}, "properties": {"x": {"$ref": "#/$defs/a"}}}`)})
	var te taskertype.TemplateErrors
	require.ErrorAs(t, err, &te)
	require.Contains(t, te[0].Msg, "$ref cycle")
}

func TestSchemaApplicationsLimit(t *testing.T) {
	t.Parallel()
	// Each definition applies the next twice: 2^30 applications to one value.
	var b strings.Builder
	b.WriteString("name: fan\n" + oneStep + "schema:\n  $ref: \"#/$defs/d0\"\n  $defs:\n")
	for i := range 30 {
		fmt.Fprintf(&b, "    d%d: {allOf: [{$ref: \"#/$defs/d%d\"}, {$ref: \"#/$defs/d%d\"}]}\n", i, i+1, i+1)
	}
	b.WriteString("    d30: {type: object}\n")
	e := onlyError(t, b.String())
	require.Equal(t, "schema", e.Field)
	require.Contains(t, e.Msg, fmt.Sprintf("applies more than %d subschemas to one value", MaxSchemaApplications))
}

func TestExpansionLimit(t *testing.T) {
	t.Parallel()
	// "Billion laughs": each level lists the previous one ten times.
	var b strings.Builder
	b.WriteString("name: laughs\nl0: &l0 [\"" + strings.Repeat("ha", 50) + "\"]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("step_templates:\n  - {name: a, handler_class: X, handler_config: {v: *l9}}\n")
	tm, errs := Parse("laughs.yml", []byte(b.String()), "")
	require.Nil(t, tm)
	var found bool
	for _, e := range errs {
		if strings.Contains(e.Msg, fmt.Sprintf("expands to more than %d bytes", MaxExpandedBytes)) {
			found = true
			require.Equal(t, "step_templates[0].handler_config", e.Field)
			require.Equal(t, "a", e.Step)
		}
	}
	require.True(t, found, "%v", errs)

	// Many steps sharing one big description through an alias.
	b.Reset()
	b.WriteString("name: laughs\nd: &d \"" + strings.Repeat("x", 1000) + "\"\nstep_templates:\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "  - {name: s%d, handler_class: X, description: *d}\n", i)
	}
	tm, errs = Parse("laughs.yml", []byte(b.String()), "")
	require.Nil(t, tm)
	require.NotEmpty(t, errs)
	require.Contains(t, errs.Error(), "expands to more than")
}

func TestNumbersKeptExactly(t *testing.T) {
	t.Parallel()
	src := `name: nums
schema:
  type: object
  properties:
    n: {type: integer, maximum: 123456789012345678901234567890}
step_templates:
  - name: a
    handler_class: X
    handler_config:
      big: 123456789012345678901234567890
      neg: -98765432109876543210
      u64: 18446744073709551615
      pi: 3.14159265358979323846264338327950288
      huge: 1e400
      tiny: 1e-400
      plus: +5
      dot: .5
      trailing: 5.
      under: 1_000
      hex: 0x1F
      zeros: 0.10
      str: "1e400"
      list: [1e400, 2]
`
	tm, errs := Parse("nums.yml", []byte(src), "")
	require.Nil(t, errs)
	raw, err := json.Marshal(tm.Step("a").HandlerConfig)
	require.NoError(t, err)
	want := map[string]any{"big": "123456789012345678901234567890", "neg": "-98765432109876543210",
		"u64": "18446744073709551615", "pi": "3.14159265358979323846264338327950288",
		"huge": "1e400", "tiny": "1e-400", "plus": "5", "dot": "0.5", "trailing": "5", "under": "1000",
		"hex": "31", "zeros": "0.10", "str": "1e400", "list": []any{"1e400", "2"}}
	for k, v := range want {
		if s, ok := v.(string); ok && k != "str" {
			want[k] = json.Number(s)
		}
	}
	want["list"] = []any{json.Number("1e400"), json.Number("2")}
	// The JSON a handler gets, decoded keeping numbers as text.
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var got map[string]any
	require.NoError(t, dec.Decode(&got))
	require.Equal(t, want, got)
	require.Equal(t, json.Number("123456789012345678901234567890"), tm.Step("a").HandlerConfig["big"])

	// The schema keeps its digits too, so the bound is exact.
	require.Contains(t, string(tm.Schema), "123456789012345678901234567890")
	require.NoError(t, tm.ValidateContext([]byte(`{"n": 123456789012345678901234567890}`)))
	require.Error(t, tm.ValidateContext([]byte(`{"n": 123456789012345678901234567891}`)))

	// Numbers beyond the limits, and non-finite ones, are refused with
	// their location.
	for _, tc := range []struct{ value, msg string }{
		{"1e10001", fmt.Sprintf("has an exponent beyond ±%d", MaxNumberExponent)},
		{"-1.5E-99999999999", fmt.Sprintf("has an exponent beyond ±%d", MaxNumberExponent)},
		{strings.Repeat("9", MaxNumberDigits+1), fmt.Sprintf("more than the limit of %d", MaxNumberDigits)},
		{".inf", "cannot be represented in JSON"},
		{".nan", "cannot be represented in JSON"},
	} {
		e := onlyError(t, "name: nums\nstep_templates:\n  - name: a\n    handler_class: X\n    handler_config:\n      x: {y: ["+tc.value+"]}\n")
		require.Equal(t, "step_templates[0].handler_config", e.Field, tc.value)
		require.Equal(t, 6, e.Line, tc.value)
		require.Contains(t, e.Msg, `at "/x/y/0"`, tc.value)
		require.Contains(t, e.Msg, tc.msg, tc.value)
	}
	// At the limits the numbers are kept.
	at := "name: nums\nstep_templates:\n  - name: a\n    handler_class: X\n    handler_config: {e: 1e10000, d: " + strings.Repeat("9", MaxNumberDigits) + "}\n"
	_, errs = Parse("nums.yml", []byte(at), "")
	require.Nil(t, errs)
}

func TestErrorsPerFileCapped(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("name: many\n" + oneStep)
	for i := range 500 {
		fmt.Fprintf(&b, "unknown_%d: 1\n", i)
	}
	tm, errs := Parse("many.yml", []byte(b.String()), "")
	require.Nil(t, tm)
	require.Len(t, errs, maxErrorsPerFile+1)
	require.Equal(t, "400 more problems not listed", errs[maxErrorsPerFile].Msg)
}
