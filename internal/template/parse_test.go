package template

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tasker-systems/tasker/taskertype"
)

// problem is one expected TemplateError: line, field and step must match
// exactly, msg lists substrings of the message.
type problem struct {
	line  int
	field string
	step  string
	msg   []string
}

// requireProblems asserts that every wanted problem is among errs, and that
// every error names file.
func requireProblems(t *testing.T, file string, errs taskertype.TemplateErrors, want ...problem) {
	t.Helper()
	require.NotEmpty(t, errs)
	require.True(t, errors.Is(errs, taskertype.ErrInvalidTemplate))
	for _, e := range errs {
		require.Equal(t, file, e.File, "error %q names the wrong file", e)
		require.NotEmpty(t, e.Msg)
	}
next:
	for _, w := range want {
		for _, e := range errs {
			if e.Line != w.line || e.Field != w.field || e.Step != w.step {
				continue
			}
			for _, m := range w.msg {
				if !strings.Contains(e.Msg, m) {
					continue next
				}
			}
			// The rendered error carries the same facts.
			s := e.Error()
			require.Contains(t, s, file)
			require.Contains(t, s, e.Field)
			continue next
		}
		require.Failf(t, "problem not reported", "want %+v\ngot:\n%s", w, errs.Error())
	}
}

const validYAML = `name: order_fulfillment   # line 1
namespace_name: shop
version: 1.2.0
description: Fulfil an order
task_handler_class: OrderHandler
schema:
  type: object
  required: [order_id]
  properties:
    order_id: {type: integer}
max_parallel_steps: 5
step_templates:
  - name: validate
    description: check the order
    handler_class: ValidateHandler
    handler_config: {url: "https://staging", retries: 2}
  - name: charge
    handler_class: tasker:http
    depends_on_step: validate
    depends_on_steps: [validate, reserve]
    default_retryable: false
    default_retry_limit: 5
    timeout_seconds: 30
    skippable: true
  - name: reserve
    handler_class: ReserveHandler
    when: context.order_id > 0
timeout_seconds: 600
`

func TestParseValid(t *testing.T) {
	t.Parallel()
	tm, errs := Parse("order.yml", []byte(validYAML), "")
	require.Nil(t, errs)
	require.NotNil(t, tm)

	require.Equal(t, "order.yml", tm.File)
	require.Equal(t, "order_fulfillment", tm.Name)
	require.Equal(t, "shop", tm.Namespace)
	require.Equal(t, "1.2.0", tm.Version)
	require.Equal(t, "shop/order_fulfillment@1.2.0", tm.Key())
	require.Equal(t, "Fulfil an order", tm.Description)
	require.Equal(t, "OrderHandler", tm.TaskHandlerClass)
	require.Equal(t, 5, tm.MaxParallelSteps)
	require.Equal(t, 600, tm.TimeoutSeconds)
	require.Equal(t, "context.order_id > 0", tm.Step("reserve").When)
	require.NotNil(t, tm.Step("reserve").Condition)
	require.Nil(t, tm.Step("charge").Condition)
	require.Same(t, tm.Step("reserve").Condition, tm.Condition("reserve"))
	require.Nil(t, tm.Condition("charge"))
	require.JSONEq(t, `{"type":"object","required":["order_id"],"properties":{"order_id":{"type":"integer"}}}`, string(tm.Schema))
	require.Len(t, tm.Steps, 3)

	v := tm.Step("validate")
	require.Equal(t, &StepTemplate{
		Name: "validate", Description: "check the order", HandlerClass: "ValidateHandler",
		HandlerConfig: map[string]any{"url": "https://staging", "retries": json.Number("2")},
		Retryable:     true, MaxAttempts: RetryLimitDefault, Line: 13,
	}, v)

	c := tm.Step("charge")
	require.Equal(t, &StepTemplate{
		Name: "charge", HandlerClass: "tasker:http",
		DependsOn: []string{"validate", "reserve"}, // merged, order kept, duplicate removed
		Retryable: false, MaxAttempts: 5, TimeoutSeconds: 30, Skippable: true, Line: 17,
	}, c)
	require.Nil(t, tm.Step("nope"))
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	tm, errs := Parse("min.yml", []byte("name: minimal\nstep_templates:\n  - {name: only, handler_class: tasker:noop}\n"), "")
	require.Nil(t, errs)
	require.Equal(t, NamespaceDefault, tm.Namespace)
	require.Equal(t, VersionDefault, tm.Version)
	require.Equal(t, MaxParallelStepsDefault, tm.MaxParallelSteps)
	require.Nil(t, tm.Schema)
	s := tm.Steps[0]
	require.True(t, s.Retryable)
	require.Equal(t, RetryLimitDefault, s.MaxAttempts)
	require.Zero(t, s.TimeoutSeconds)
	require.False(t, s.Skippable)
	require.Nil(t, s.DependsOn)
	require.Nil(t, s.HandlerConfig)
}

// TestParseProblems has one case per validation problem.
func TestParseProblems(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		yaml string
		env  string
		want []problem
	}{{
		name: "yaml syntax error",
		yaml: "name: broken\nstep_templates:\n  - name: a\n    handler_class: [unclosed\n",
		// The library names the line of the construct it was parsing.
		want: []problem{{line: 3, msg: []string{"invalid YAML", "did not find expected ',' or ']'"}}},
	}, {
		name: "yaml syntax error: bad indentation",
		yaml: "name: a\nstep_templates:\n  - name: b\n    handler_class: X\n  bad: [\n",
		want: []problem{{line: 2, msg: []string{"invalid YAML", "did not find expected '-' indicator"}}},
	}, {
		name: "string where integer expected",
		yaml: "name: a\nmax_parallel_steps: \"5\"\nstep_templates: [{name: b, handler_class: X}]\n",
		want: []problem{{line: 2, field: "max_parallel_steps", msg: []string{`expected an integer, got string "5"`}}},
	}, {
		name: "wrong types in a step",
		yaml: `name: a
step_templates:
  - name: b
    handler_class: X
    default_retryable: "yes"
    default_retry_limit: 2.5
    handler_config: [1, 2]
    depends_on_steps: c
    description: {a: 1}
`,
		want: []problem{
			{line: 5, field: "step_templates[0].default_retryable", step: "b", msg: []string{`expected a boolean`, `string "yes"`}},
			{line: 6, field: "step_templates[0].default_retry_limit", step: "b", msg: []string{"expected an integer, got float 2.5"}},
			{line: 7, field: "step_templates[0].handler_config", step: "b", msg: []string{"expected a mapping, got a list"}},
			{line: 8, field: "step_templates[0].depends_on_steps", step: "b", msg: []string{"expected a list of step names", "depends_on_step"}},
			{line: 9, field: "step_templates[0].description", step: "b", msg: []string{"expected a string, got a mapping"}},
		},
	}, {
		name: "step_templates not a list",
		yaml: "name: a\nstep_templates: {name: b}\n",
		want: []problem{{line: 2, field: "step_templates", msg: []string{"expected a list of steps, got a mapping"}}},
	}, {
		name: "unknown fields with suggestions",
		yaml: `name: a
verison: 1.0.0
step_templates:
  - name: b
    handler_clas: X
    depends_on_stpes: [c]
    frobnicate: true
`,
		want: []problem{
			{line: 2, field: "verison", msg: []string{`unknown field "verison"`, `did you mean "version"?`}},
			{line: 5, field: "step_templates[0].handler_clas", step: "b", msg: []string{`unknown field "handler_clas"`, `did you mean "handler_class"?`}},
			{line: 6, field: "step_templates[0].depends_on_stpes", step: "b", msg: []string{`did you mean "depends_on_steps"?`}},
			{line: 7, field: "step_templates[0].frobnicate", step: "b", msg: []string{`unknown field "frobnicate"`, "known fields: name, description"}},
			// handler_clas was not taken as handler_class.
			{line: 4, field: "step_templates[0].handler_class", step: "b", msg: []string{"missing required field"}},
		},
	}, {
		name: "missing template name and steps",
		yaml: "description: nothing else\n",
		want: []problem{
			{line: 1, field: "name", msg: []string{"missing required field"}},
			{line: 1, field: "step_templates", msg: []string{"missing required field"}},
		},
	}, {
		name: "missing step name and handler_class",
		yaml: "name: a\nstep_templates:\n  - description: no name\n  - name: b\n",
		want: []problem{
			{line: 3, field: "step_templates[0].name", msg: []string{"missing required field"}},
			{line: 3, field: "step_templates[0].handler_class", msg: []string{"missing required field"}},
			{line: 4, field: "step_templates[1].handler_class", step: "b", msg: []string{"missing required field"}},
		},
	}, {
		name: "null counts as missing",
		yaml: "name:\nstep_templates:\n",
		want: []problem{
			{line: 1, field: "name", msg: []string{"missing required field"}},
			{line: 1, field: "step_templates", msg: []string{"missing required field"}},
		},
	}, {
		name: "duplicate step names",
		yaml: "name: a\nstep_templates:\n  - name: b\n    handler_class: X\n  - name: b\n    handler_class: Y\n",
		want: []problem{{line: 5, field: "step_templates[1].name", step: "b", msg: []string{`duplicate step name "b"`, "first defined at line 3"}}},
	}, {
		name: "unknown dependency with suggestion",
		yaml: `name: a
step_templates:
  - name: validate
    handler_class: X
  - name: charge
    handler_class: X
    depends_on_steps:
      - validate
      - vaildate
  - name: ship
    handler_class: X
    depends_on_step: nowhere_near
`,
		want: []problem{
			{line: 9, field: "step_templates[1].depends_on_steps", step: "charge", msg: []string{`depends on unknown step "vaildate"`, `did you mean "validate"?`}},
			{line: 12, field: "step_templates[2].depends_on_step", step: "ship", msg: []string{`unknown step "nowhere_near"`}},
		},
	}, {
		name: "self dependency",
		yaml: "name: a\nstep_templates:\n  - name: b\n    handler_class: X\n    depends_on_step: b\n",
		want: []problem{{line: 5, field: "step_templates[0].depends_on_step", step: "b", msg: []string{"step depends on itself"}}},
	}, {
		name: "cycle",
		yaml: `name: a
step_templates:
  - name: start
    handler_class: X
  - name: a
    handler_class: X
    depends_on_steps: [start, b]
  - name: b
    handler_class: X
    depends_on_step: c
  - name: c
    handler_class: X
    depends_on_step: a
`,
		want: []problem{{line: 7, field: "step_templates[1].depends_on_steps", step: "a", msg: []string{"cycle: a -> b -> c -> a"}}},
	}, {
		name: "two separate cycles are both reported",
		yaml: `name: a
step_templates:
  - {name: a, handler_class: X, depends_on_step: b}
  - {name: b, handler_class: X, depends_on_step: a}
  - {name: c, handler_class: X, depends_on_step: d}
  - {name: d, handler_class: X, depends_on_step: c}
`,
		want: []problem{
			{line: 3, field: "step_templates[0].depends_on_step", step: "a", msg: []string{"cycle: a -> b -> a"}},
			{line: 5, field: "step_templates[2].depends_on_step", step: "c", msg: []string{"cycle: c -> d -> c"}},
		},
	}, {
		name: "invalid schema",
		yaml: `name: a
schema:
  type: object
  properties:
    order_id:
      type: integr
step_templates: [{name: b, handler_class: X}]
`,
		want: []problem{{line: 6, field: "schema", msg: []string{"invalid JSON Schema", "/properties/order_id/type"}}},
	}, {
		name: "schema with an external reference",
		yaml: "name: a\nschema: {$ref: \"file:///etc/passwd\"}\nstep_templates: [{name: b, handler_class: X}]\n",
		want: []problem{{line: 2, field: "schema", msg: []string{"external schema references are not allowed"}}},
	}, {
		name: "schema that is not a mapping",
		yaml: "name: a\nschema: [type, object]\nstep_templates: [{name: b, handler_class: X}]\n",
		want: []problem{{line: 2, field: "schema", msg: []string{"expected a JSON Schema"}}},
	}, {
		name: "bad version",
		yaml: "name: a\nversion: banana\nstep_templates: [{name: b, handler_class: X}]\n",
		want: []problem{{line: 2, field: "version", msg: []string{`"banana" is not a valid semantic version`}}},
	}, {
		name: "incomplete version",
		yaml: "name: a\nversion: 1.0\nstep_templates: [{name: b, handler_class: X}]\n",
		want: []problem{{line: 2, field: "version", msg: []string{`"1.0" is not a valid semantic version`, "MAJOR.MINOR.PATCH"}}},
	}, {
		name: "max_parallel_steps below 1",
		yaml: "name: a\nmax_parallel_steps: 0\nstep_templates: [{name: b, handler_class: X}]\n",
		want: []problem{{line: 2, field: "max_parallel_steps", msg: []string{"must be at least 1, got 0"}}},
	}, {
		name: "when not a boolean",
		yaml: "name: a\nstep_templates:\n  - name: b\n    handler_class: X\n    when: \"1 + 2\"\n",
		want: []problem{{line: 5, field: "step_templates[0].when", step: "b", msg: []string{"must be a boolean, it is int"}}},
	}, {
		name: "when syntax error",
		yaml: "name: a\nstep_templates:\n  - name: b\n    handler_class: X\n    when: \"context.x >\"\n",
		want: []problem{{line: 5, field: "step_templates[0].when", step: "b", msg: []string{"Syntax error"}}},
	}, {
		name: "when reads a step that is not a parent",
		yaml: "name: a\nstep_templates:\n  - {name: b, handler_class: X}\n  - {name: c, handler_class: X}\n  - name: d\n    handler_class: X\n    depends_on_step: b\n    when: 'results.b.ok && results[\"c\"].ok'\n",
		want: []problem{{line: 8, field: "step_templates[2].when", step: "d", msg: []string{"reads results.c, but c is not a parent of d (parents: b)"}}},
	}, {
		name: "idempotency window below a minute",
		yaml: "name: a\nidempotency_window_seconds: 30\nstep_templates: [{name: b, handler_class: X}]\n",
		want: []problem{{line: 2, field: "idempotency_window_seconds", msg: []string{"must be at least 60, got 30"}}},
	}, {
		name: "task timeout_seconds below 1",
		yaml: "name: a\ntimeout_seconds: 0\nstep_templates: [{name: b, handler_class: X}]\n",
		want: []problem{{line: 2, field: "timeout_seconds", msg: []string{"must be at least 1, got 0"}}},
	}, {
		name: "default_retry_limit below 1",
		yaml: "name: a\nstep_templates:\n  - name: b\n    handler_class: X\n    default_retry_limit: 0\n",
		want: []problem{{line: 5, field: "step_templates[0].default_retry_limit", step: "b", msg: []string{"must be at least 1, got 0"}}},
	}, {
		name: "timeout_seconds below 0",
		yaml: "name: a\nstep_templates:\n  - name: b\n    handler_class: X\n    timeout_seconds: -1\n",
		want: []problem{{line: 5, field: "step_templates[0].timeout_seconds", step: "b", msg: []string{"must be at least 0, got -1"}}},
	}, {
		name: "integer too large for the store",
		yaml: "name: a\nstep_templates:\n  - name: b\n    handler_class: X\n    timeout_seconds: 9999999999999\n",
		want: []problem{{line: 5, field: "step_templates[0].timeout_seconds", step: "b", msg: []string{"must be at most 2147483647"}}},
	}, {
		name: "unknown builtin handler",
		yaml: "name: a\nstep_templates:\n  - name: b\n    handler_class: tasker:htp\n",
		want: []problem{{line: 4, field: "step_templates[0].handler_class", step: "b", msg: []string{`unknown built-in handler "tasker:htp"`, `did you mean "tasker:http"?`, "tasker:noop"}}},
	}, {
		name: "empty handler_class",
		yaml: "name: a\nstep_templates:\n  - name: b\n    handler_class: \"  \"\n",
		want: []problem{{line: 4, field: "step_templates[0].handler_class", step: "b", msg: []string{"must not be empty"}}},
	}, {
		name: "blank task_handler_class",
		yaml: "name: a\ntask_handler_class: \" \"\nstep_templates: [{name: b, handler_class: X}]\n",
		want: []problem{{line: 2, field: "task_handler_class", msg: []string{"must not be empty"}}},
	}, {
		name: "empty step_templates",
		yaml: "name: a\nstep_templates: []\n",
		want: []problem{{line: 2, field: "step_templates", msg: []string{"at least one step"}}},
	}, {
		name: "non UTF-8 content",
		yaml: "name: a\ndescription: caf\xe9\nstep_templates: [{name: b, handler_class: X}]\n",
		want: []problem{{line: 2, msg: []string{"not valid UTF-8", "0xe9"}}},
	}, {
		name: "names outside the identifier rule",
		yaml: `name: "x'; DROP TABLE tasks; --"
namespace_name: "my shop"
step_templates:
  - name: "it's"
    handler_class: X
  - name: "-leading"
    handler_class: X
`,
		want: []problem{
			{line: 1, field: "name", msg: []string{`"x'; DROP TABLE tasks; --" is not a valid name`, "letters, digits"}},
			{line: 2, field: "namespace_name", msg: []string{`"my shop" is not a valid name`}},
			{line: 4, field: "step_templates[0].name", msg: []string{`"it's" is not a valid name`}},
			{line: 6, field: "step_templates[1].name", msg: []string{`"-leading" is not a valid name`}},
		},
	}, {
		name: "environment override for an unknown step",
		yaml: `name: a
step_templates:
  - name: validate
    handler_class: X
environments:
  production:
    step_templates:
      - name: valdate
        default_retry_limit: 5
`,
		env:  "production",
		want: []problem{{line: 8, field: "environments.production.step_templates[0].name", step: "valdate", msg: []string{`environment "production" overrides unknown step "valdate"`, `did you mean "validate"?`}}},
	}, {
		name: "environment override checked when another environment is selected",
		yaml: `name: a
step_templates:
  - name: validate
    handler_class: X
environments:
  production:
    step_templates:
      - name: validate
        default_retry_limit: 0
        handler_clas: Y
      - name: ghost
`,
		env: "",
		want: []problem{
			{line: 9, field: "environments.production.step_templates[0].default_retry_limit", step: "validate", msg: []string{"must be at least 1"}},
			{line: 10, field: "environments.production.step_templates[0].handler_clas", step: "validate", msg: []string{`did you mean "handler_class"?`}},
			{line: 11, field: "environments.production.step_templates[1].name", step: "ghost", msg: []string{`unknown step "ghost"`}},
		},
	}, {
		name: "environment block with an unknown field",
		yaml: "name: a\nstep_templates: [{name: b, handler_class: X}]\nenvironments:\n  prod:\n    step_template: []\n",
		want: []problem{{line: 5, field: "environments.prod.step_template", msg: []string{`did you mean "step_templates"?`}}},
	}, {
		name: "duplicate YAML key",
		yaml: "name: a\nname: b\nstep_templates: [{name: b, handler_class: X}]\n",
		want: []problem{{line: 2, field: "name", msg: []string{`duplicate field "name"`, "line 1"}}},
	}, {
		name: "more than one document",
		yaml: "name: a\nstep_templates: [{name: b, handler_class: X}]\n---\nname: c\n",
		want: []problem{{line: 3, msg: []string{"more than one YAML document"}}},
	}, {
		name: "empty file",
		yaml: "# nothing here\n",
		want: []problem{{line: 0, msg: []string{"file is empty"}}},
	}, {
		name: "not a mapping",
		yaml: "- name: a\n",
		want: []problem{{line: 1, msg: []string{"must be a YAML mapping, got a list"}}},
	}, {
		name: "handler_config that JSON cannot hold",
		yaml: "name: a\nstep_templates:\n  - name: b\n    handler_class: X\n    handler_config: {ratio: .nan}\n",
		want: []problem{{line: 5, field: "step_templates[0].handler_config", step: "b", msg: []string{`"/ratio"`, "NaN"}}},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tm, errs := Parse("t.yml", []byte(tc.yaml), tc.env)
			require.Nil(t, tm, "a template with problems must not be returned")
			requireProblems(t, "t.yml", errs, tc.want...)
		})
	}
}

// TestParseReportsEveryProblem checks that one file's problems are all
// collected, across the reading, merging and graph phases.
func TestParseReportsEveryProblem(t *testing.T) {
	t.Parallel()
	src := `name: "bad name"
version: 1
max_parallel_steps: -3
step_templates:
  - name: a
    handler_class: tasker:nope
    depends_on_step: missing
  - name: a
    handler_class: X
    timeout_seconds: -1
`
	tm, errs := Parse("all.yml", []byte(src), "")
	require.Nil(t, tm)
	requireProblems(t, "all.yml", errs,
		problem{line: 1, field: "name", msg: []string{"not a valid name"}},
		problem{line: 2, field: "version", msg: []string{"not a valid semantic version"}},
		problem{line: 3, field: "max_parallel_steps", msg: []string{"at least 1"}},
		problem{line: 6, field: "step_templates[0].handler_class", step: "a", msg: []string{"unknown built-in handler"}},
		problem{line: 7, field: "step_templates[0].depends_on_step", step: "a", msg: []string{"unknown step"}},
		problem{line: 8, field: "step_templates[1].name", step: "a", msg: []string{"duplicate step name"}},
		problem{line: 10, field: "step_templates[1].timeout_seconds", step: "a", msg: []string{"at least 0"}},
	)
	require.Len(t, errs, 7)
	for i := 1; i < len(errs); i++ {
		require.LessOrEqual(t, errs[i-1].Line, errs[i].Line, "problems are sorted by line")
	}
}

func TestParseInvalidStepNameIsNotAlsoUnknown(t *testing.T) {
	t.Parallel()
	src := "name: a\nstep_templates:\n  - {name: \"b c\", handler_class: X}\n  - {name: d, handler_class: X, depends_on_step: \"b c\"}\n"
	_, errs := Parse("t.yml", []byte(src), "")
	require.Len(t, errs, 1, errs.Error())
	require.Contains(t, errs[0].Msg, "not a valid name")
}

func TestEnvironmentMerge(t *testing.T) {
	t.Parallel()
	src := `name: deploy
step_templates:
  - name: fetch
    description: base
    handler_class: tasker:http
    handler_config:
      url: https://staging
      headers: {accept: json, x-env: staging}
      tags: [a, b]
      limits: {rps: 5}
    depends_on_steps: []
    default_retry_limit: 3
    timeout_seconds: 10
  - name: store
    handler_class: StoreHandler
    depends_on_step: fetch
  - name: audit
    handler_class: AuditHandler
environments:
  production:
    step_templates:
      - name: fetch
        handler_config:
          url: https://prod
          headers: {x-env: prod, x-extra: "1"}
          tags: [c]
          limits: 100
        default_retry_limit: 5
        skippable: true
      - name: store
        depends_on_steps: [audit]
        handler_class: ProdStoreHandler
  staging:
`
	base, errs := Parse("d.yml", []byte(src), "")
	require.Nil(t, errs)
	fetch := base.Step("fetch")
	require.Equal(t, map[string]any{
		"url":     "https://staging",
		"headers": map[string]any{"accept": "json", "x-env": "staging"},
		"tags":    []any{"a", "b"},
		"limits":  map[string]any{"rps": json.Number("5")},
	}, fetch.HandlerConfig)
	require.Equal(t, 3, fetch.MaxAttempts)

	// An environment the file does not define, and one defined empty,
	// apply nothing.
	for _, env := range []string{"staging", "qa"} {
		other, errs := Parse("d.yml", []byte(src), env)
		require.Nil(t, errs)
		require.Equal(t, base.Steps, other.Steps)
	}

	prod, errs := Parse("d.yml", []byte(src), "production")
	require.Nil(t, errs)
	fetch = prod.Step("fetch")
	require.Equal(t, map[string]any{
		"url":     "https://prod",                                                    // scalar replaced
		"headers": map[string]any{"accept": "json", "x-env": "prod", "x-extra": "1"}, // maps deep-merged
		"tags":    []any{"c"},                                                        // list replaced
		"limits":  json.Number("100"),                                                // map replaced by a scalar
	}, fetch.HandlerConfig)
	require.Equal(t, 5, fetch.MaxAttempts)
	require.Equal(t, 10, fetch.TimeoutSeconds, "fields the override does not set are kept")
	require.Equal(t, "base", fetch.Description)
	require.True(t, fetch.Skippable)

	store := prod.Step("store")
	require.Equal(t, "ProdStoreHandler", store.HandlerClass)
	// depends_on_steps is replaced; depends_on_step (not overridden) stays
	// and is merged first.
	require.Equal(t, []string{"fetch", "audit"}, store.DependsOn)

	// The base parse is not affected by the production one.
	require.Equal(t, "https://staging", base.Step("fetch").HandlerConfig["url"])
}

func TestEnvironmentOverrideCanCreateCycle(t *testing.T) {
	t.Parallel()
	src := `name: a
step_templates:
  - {name: x, handler_class: X}
  - {name: y, handler_class: X, depends_on_step: x}
environments:
  production:
    step_templates:
      - name: x
        depends_on_step: y
`
	_, errs := Parse("t.yml", []byte(src), "")
	require.Nil(t, errs)
	tm, errs := Parse("t.yml", []byte(src), "production")
	require.Nil(t, tm)
	requireProblems(t, "t.yml", errs, problem{
		line: 9, field: "environments.production.step_templates[0].depends_on_step", step: "x",
		msg: []string{"cycle: x -> y -> x"},
	})
}

func TestParseAnchorsAndMergeKeys(t *testing.T) {
	t.Parallel()
	src := `name: anchors
step_templates:
  - &http
    name: first
    handler_class: tasker:http
    default_retry_limit: 7
    handler_config: &cfg {method: GET, timeout: 5}
  - <<: *http
    name: second
    handler_config:
      <<: *cfg
      method: POST
`
	tm, errs := Parse("t.yml", []byte(src), "")
	require.Nil(t, errs)
	second := tm.Step("second")
	require.Equal(t, "tasker:http", second.HandlerClass)
	require.Equal(t, 7, second.MaxAttempts)
	require.Equal(t, map[string]any{"method": "POST", "timeout": json.Number("5")}, second.HandlerConfig)
}

func TestParseSelfMergeDoesNotHang(t *testing.T) {
	t.Parallel()
	src := "name: a\nstep_templates:\n  - &s\n    name: b\n    handler_class: X\n    <<: [*s, *s, *s, *s]\n"
	tm, errs := Parse("t.yml", []byte(src), "")
	require.Nil(t, tm)
	requireProblems(t, "t.yml", errs, problem{line: 6, field: "step_templates[0]", msg: []string{"merge keys"}})
}
