package template

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tasker-systems/tasker/taskertype"
)

func TestParseHandlerLimits(t *testing.T) {
	tmpl, errs := Parse("charge.yaml", []byte(`name: charge
handler_limits:
  ChargeCard: 2
  "Billing::Refund": 1
step_templates:
  - {name: charge, handler_class: ChargeCard}
`), "")
	require.Nil(t, errs)
	require.Equal(t, map[string]int{"ChargeCard": 2, "Billing::Refund": 1}, tmpl.HandlerLimits)
	r := NewRegistry()
	require.False(t, r.HasHandlerLimits())
	require.Zero(t, r.HandlerLimit("ChargeCard"))
	require.NoError(t, r.Add(tmpl))
	require.True(t, r.HasHandlerLimits())
	require.Equal(t, 2, r.HandlerLimit("ChargeCard"))
	require.Equal(t, 1, r.HandlerLimit("Billing::Refund"))
	require.Zero(t, r.HandlerLimit("Other"))
}

// Every problem is reported with the file, line and field.
func TestParseHandlerLimitErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"zero", "handler_limits:\n  ChargeCard: 0\n", `x.yaml:3: handler_limits.ChargeCard: must be at least 1, got 0`},
		{"string", "handler_limits:\n  ChargeCard: two\n", `x.yaml:3: handler_limits.ChargeCard: expected an integer, got string "two"`},
		{"missing", "handler_limits:\n  ChargeCard:\n", `x.yaml:3: handler_limits.ChargeCard: missing limit`},
		{"unknown builtin", "handler_limits:\n  tasker:htp: 3\n", `x.yaml:3: handler_limits.tasker:htp: handler class unknown built-in handler "tasker:htp" (did you mean "tasker:http"?)`},
		{"not a mapping", "handler_limits: [ChargeCard]\n", `x.yaml:2: handler_limits: expected a mapping of handler classes to limits (ChargeCard: 2), got`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := Parse("x.yaml", []byte("name: x\n"+tc.yaml+"step_templates:\n  - {name: a, handler_class: tasker:noop}\n"), "")
			require.NotEmpty(t, errs)
			require.Contains(t, errs.Error(), tc.want)
		})
	}
}

// A second, different limit for a class is refused naming both; the same
// limit again is fine; SetHandlerLimit follows the same rule.
func TestHandlerLimitConflict(t *testing.T) {
	r := NewRegistry()
	parse := func(file, name string, n int) *Template {
		tmpl, errs := Parse(file, []byte("name: "+name+"\nhandler_limits:\n  ChargeCard: "+string(rune('0'+n))+
			"\nstep_templates:\n  - {name: s, handler_class: ChargeCard}\n"), "")
		require.Nil(t, errs)
		return tmpl
	}
	require.NoError(t, r.Add(parse("a.yaml", "a", 2)))
	require.NoError(t, r.Add(parse("b.yaml", "b", 2)))
	err := r.Add(parse("c.yaml", "c", 3))
	var te taskertype.TemplateErrors
	require.ErrorAs(t, err, &te)
	require.Equal(t, "c.yaml", te[0].File)
	require.Equal(t, 3, te[0].Line)
	require.Equal(t, "handler_limits.ChargeCard", te[0].Field)
	require.Contains(t, te[0].Msg, `handler class "ChargeCard" is limited to 3 here (default/c@0.1.0 (c.yaml)) but to 2 in default/a@0.1.0 (a.yaml)`)
	require.Equal(t, 2, r.HandlerLimit("ChargeCard"), "the refused template changed nothing")

	require.NoError(t, r.SetHandlerLimit("ChargeCard", 2, "engine config"))
	var conflict *HandlerLimitConflictError
	require.ErrorAs(t, r.SetHandlerLimit("ChargeCard", 5, "engine config"), &conflict)
	require.Equal(t, 2, conflict.Existing)
	require.Error(t, r.SetHandlerLimit("Mailer", 0, "engine config"))
	require.NoError(t, r.SetHandlerLimit("Mailer", 4, "engine config"))
	require.Equal(t, map[string]int{"ChargeCard": 2, "Mailer": 4}, r.HandlerLimits())

	// In memory: checked by Add.
	bad := &Template{Name: "m", HandlerLimits: map[string]int{"X": 0},
		Steps: []*StepTemplate{{Name: "s", HandlerClass: "tasker:noop"}}}
	require.ErrorContains(t, NewRegistry().Add(bad), "handler_limits.X: must be at least 1, got 0")
}
