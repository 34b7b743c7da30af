package template

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tasker-systems/tasker/taskertype"
)

const rateLimitYAML = `name: charge
rate_limits:
  stripe: {per_second: 25, burst: 50}
  mailer: {per_minute: 90}
  slow: {per_second: 0.5}
step_templates:
  - name: charge
    handler_class: tasker:noop
    rate_limit: stripe
  - name: mail
    handler_class: tasker:noop
    rate_limit: mailer
    depends_on_step: charge
  - name: free
    handler_class: tasker:noop
environments:
  test:
    step_templates:
      - name: free
        rate_limit: slow
`

func TestParseRateLimits(t *testing.T) {
	tmpl, errs := Parse("charge.yaml", []byte(rateLimitYAML), "")
	require.Nil(t, errs)
	require.Len(t, tmpl.RateLimits, 3)
	s := tmpl.StepRateLimit("charge")
	require.NotNil(t, s)
	require.Equal(t, "stripe", s.Name)
	require.Equal(t, 25.0, s.Rate())
	require.Equal(t, 50, s.Burst)
	require.Equal(t, 3, s.Line)
	m := tmpl.StepRateLimit("mail")
	require.Equal(t, 1.5, m.Rate())
	require.Equal(t, 2, m.Burst, "default burst: a second's worth, rounded up")
	require.Equal(t, 1, tmpl.RateLimits["slow"].Burst, "default burst is at least 1")
	require.Nil(t, tmpl.StepRateLimit("free"))
	require.True(t, tmpl.HasRateLimits())
	require.Equal(t, "stripe (25/s, burst 50)", s.String())
	require.Equal(t, "mailer (90/min, burst 2)", m.String())

	// An environment override may set a step's limit.
	tmpl, errs = Parse("charge.yaml", []byte(rateLimitYAML), "test")
	require.Nil(t, errs)
	require.Equal(t, "slow", tmpl.StepRateLimit("free").Name)
}

// Every problem is reported with the file, line, field and step.
func TestParseRateLimitErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"undefined", "rate_limits: {stripe: {per_second: 1}}\nstep_templates:\n  - {name: a, handler_class: tasker:noop, rate_limit: strpe}\n",
			`x.yaml:4: step "a": step_templates[0].rate_limit: rate limit "strpe" is not defined in rate_limits (did you mean "stripe"?)`},
		{"none defined", "step_templates:\n  - {name: a, handler_class: tasker:noop, rate_limit: stripe}\n",
			`x.yaml:3: step "a": step_templates[0].rate_limit: rate limit "stripe" is not defined in rate_limits (the template defines none)`},
		{"zero rate", "rate_limits:\n  stripe: {per_second: 0}\nstep_templates:\n  - {name: a, handler_class: tasker:noop}\n",
			`x.yaml:3: rate_limits.stripe.per_second: must be greater than 0, got 0`},
		{"negative rate", "rate_limits:\n  stripe: {per_minute: -3}\nstep_templates:\n  - {name: a, handler_class: tasker:noop}\n",
			`x.yaml:3: rate_limits.stripe.per_minute: must be greater than 0, got -3`},
		{"zero burst", "rate_limits:\n  stripe:\n    per_second: 2\n    burst: 0\nstep_templates:\n  - {name: a, handler_class: tasker:noop}\n",
			`x.yaml:5: rate_limits.stripe.burst: must be at least 1, got 0`},
		{"both rates", "rate_limits:\n  stripe: {per_second: 2, per_minute: 3}\nstep_templates:\n  - {name: a, handler_class: tasker:noop}\n",
			`x.yaml:3: rate_limits.stripe.per_minute: per_second and per_minute are exclusive: give one`},
		{"no rate", "rate_limits:\n  stripe: {burst: 3}\nstep_templates:\n  - {name: a, handler_class: tasker:noop}\n",
			`x.yaml:3: rate_limits.stripe: missing per_second or per_minute: a limit needs a rate`},
		{"string rate", "rate_limits:\n  stripe: {per_second: \"5\"}\nstep_templates:\n  - {name: a, handler_class: tasker:noop}\n",
			`x.yaml:3: rate_limits.stripe.per_second: expected a number, got string "5"`},
		{"unknown field", "rate_limits:\n  stripe: {per_second: 5, bursts: 3}\nstep_templates:\n  - {name: a, handler_class: tasker:noop}\n",
			`x.yaml:3: rate_limits.stripe.bursts: unknown field "bursts" (did you mean "burst"?)`},
		{"not a mapping", "rate_limits: [stripe]\nstep_templates:\n  - {name: a, handler_class: tasker:noop}\n",
			`x.yaml:2: rate_limits: expected a mapping of limit names to limits`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := Parse("x.yaml", []byte("name: x\n"+tc.yaml), "")
			require.NotEmpty(t, errs)
			require.Contains(t, errs.Error(), tc.want)
		})
	}
}

// Two templates defining one limit differently are refused when the second
// is added, naming both files; the same definition twice is fine.
func TestRateLimitConflictAcrossTemplates(t *testing.T) {
	r := NewRegistry()
	a, errs := Parse("a.yaml", []byte("name: a\nrate_limits: {stripe: {per_second: 25, burst: 50}}\nstep_templates:\n  - {name: s, handler_class: tasker:noop, rate_limit: stripe}\n"), "")
	require.Nil(t, errs)
	require.NoError(t, r.Add(a))
	same, errs := Parse("b.yaml", []byte("name: b\nrate_limits: {stripe: {per_minute: 1500, burst: 50}}\nstep_templates:\n  - {name: s, handler_class: tasker:noop, rate_limit: stripe}\n"), "")
	require.Nil(t, errs)
	require.NoError(t, r.Add(same), "25/s and 1500/min are the same rate")
	other, errs := Parse("c.yaml", []byte("name: c\nrate_limits:\n  stripe: {per_second: 10}\nstep_templates:\n  - {name: s, handler_class: tasker:noop, rate_limit: stripe}\n"), "")
	require.Nil(t, errs)
	err := r.Add(other)
	require.Error(t, err)
	var te taskertype.TemplateErrors
	require.ErrorAs(t, err, &te)
	require.Equal(t, "c.yaml", te[0].File)
	require.Equal(t, 3, te[0].Line)
	require.Equal(t, "rate_limits.stripe", te[0].Field)
	require.Contains(t, te[0].Msg, `rate limit "stripe" is stripe (10/s, burst 10) here but stripe (25/s, burst 50) in default/`)
	require.Contains(t, te[0].Msg, "a.yaml")
}

// A template built in memory is checked by Registry.Add the same way.
func TestRateLimitsInMemory(t *testing.T) {
	r := NewRegistry()
	bad := &Template{Name: "m", RateLimits: map[string]*RateLimit{"x": {PerSecond: -1}},
		Steps: []*StepTemplate{{Name: "s", HandlerClass: "tasker:noop", RateLimit: "y"}}}
	err := r.Add(bad)
	require.Error(t, err)
	require.Contains(t, err.Error(), "rate_limits.x: the rate must be greater than 0")
	require.Contains(t, err.Error(), `step "s": step_templates[0].rate_limit: rate limit "y" is not defined in rate_limits`)

	good := &Template{Name: "m", RateLimits: map[string]*RateLimit{"x": {PerMinute: 30}},
		Steps: []*StepTemplate{{Name: "s", HandlerClass: "tasker:noop", RateLimit: "x"}}}
	require.NoError(t, r.Add(good))
	require.Equal(t, 1, good.StepRateLimit("s").Burst)
	require.Equal(t, "x", good.StepRateLimit("s").Name)
}
