package template

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/taskertype"
)

func concurrencyDoc(block string) []byte {
	return []byte("name: t\n" + block + "step_templates:\n  - {name: a, handler_class: A}\n")
}

func TestConcurrencyParses(t *testing.T) {
	tmpl, errs := Parse("c.yml", concurrencyDoc("concurrency:\n  key: \"acct-${context.account.id}/${ context.regions[1] }\"\n  limit: 2\n"), "")
	require.Nil(t, errs)
	require.Equal(t, &Concurrency{Key: "acct-${context.account.id}/${ context.regions[1] }", Limit: 2, Policy: PolicyQueue,
		parts: tmpl.Concurrency.parts}, tmpl.Concurrency)
	key, err := tmpl.ConcurrencyKey(json.RawMessage(`{"account": {"id": 12345678901234567890}, "regions": ["eu", "us"]}`))
	require.NoError(t, err)
	require.Equal(t, "acct-12345678901234567890/us", key, "numbers keep every digit")

	tmpl, errs = Parse("c.yml", concurrencyDoc("concurrency: {key: global, limit: 1, policy: cancel_oldest}\n"), "")
	require.Nil(t, errs)
	key, err = tmpl.ConcurrencyKey(json.RawMessage(`{}`))
	require.NoError(t, err)
	require.Equal(t, "global", key)
	require.Equal(t, PolicyCancelOldest, tmpl.Concurrency.Policy)

	tmpl, errs = Parse("c.yml", concurrencyDoc(""), "")
	require.Nil(t, errs)
	key, err = tmpl.ConcurrencyKey(json.RawMessage(`{}`))
	require.NoError(t, err)
	require.Empty(t, key, "no concurrency block, no key")
}

func TestConcurrencyLocatedErrors(t *testing.T) {
	_, errs := Parse("c.yml", concurrencyDoc(`concurrency:
  key: "acct-${account_id}"
  limit: 0
  policy: cancel_newset
`), "")
	requireProblems(t, "c.yml", errs,
		problem{line: 4, field: "concurrency.limit", msg: []string{"must be at least 1, got 0"}},
		problem{line: 5, field: "concurrency.policy", msg: []string{`unknown policy "cancel_newset"`, `did you mean "cancel_newest"?`}},
	)
	_, errs = Parse("c.yml", concurrencyDoc("concurrency:\n  key: \"acct-${account_id}\"\n  limit: 1\n"), "")
	requireProblems(t, "c.yml", errs,
		problem{line: 3, field: "concurrency.key", msg: []string{"${account_id}", "can only read the task's context"}})
	_, errs = Parse("c.yml", concurrencyDoc("concurrency:\n  key: \"acct-${context.id\"\n  limit: 1\n"), "")
	requireProblems(t, "c.yml", errs, problem{line: 3, field: "concurrency.key", msg: []string{"not closed"}})
	_, errs = Parse("c.yml", concurrencyDoc("concurrency:\n  limit: 1\n  keys: x\n"), "")
	requireProblems(t, "c.yml", errs,
		problem{line: 2, field: "concurrency.key", msg: []string{"missing required field"}},
		problem{line: 4, field: "concurrency.keys", msg: []string{`did you mean "key"?`}})
	_, errs = Parse("c.yml", concurrencyDoc("concurrency: 3\n"), "")
	requireProblems(t, "c.yml", errs, problem{line: 2, field: "concurrency", msg: []string{"expected a mapping"}})
}

func TestConcurrencyKeyValues(t *testing.T) {
	tmpl, errs := Parse("c.yml", concurrencyDoc("concurrency: {key: \"k-${context.v}\", limit: 1}\n"), "")
	require.Nil(t, errs)
	for doc, want := range map[string]string{`{"v": "x y"}`: "k-x y", `{"v": true}`: "k-true", `{"v": 1.50}`: "k-1.50"} {
		key, err := tmpl.ConcurrencyKey(json.RawMessage(doc))
		require.NoError(t, err, doc)
		require.Equal(t, want, key, doc)
	}
	for doc, want := range map[string]string{`{}`: "is missing", `{"v": null}`: "is null", `{"v": {"a": 1}}`: "is an object or a list"} {
		_, err := tmpl.ConcurrencyKey(json.RawMessage(doc))
		var re *taskertype.RequestError
		require.True(t, errors.As(err, &re), doc)
		require.Contains(t, re.Msg, want, doc)
		require.Contains(t, re.Msg, "${context.v}", doc)
	}
}

// A template built in memory gets the same checks from Registry.Add.
func TestConcurrencyInMemory(t *testing.T) {
	r := NewRegistry()
	bad := &Template{Name: "m", Steps: []*StepTemplate{{Name: "a", HandlerClass: "A", MaxAttempts: 1}},
		Concurrency: &Concurrency{Key: "${context.a}", Limit: 0}}
	err := r.Add(bad)
	require.ErrorContains(t, err, "concurrency.limit")
	good := &Template{Name: "m", Steps: []*StepTemplate{{Name: "a", HandlerClass: "A", MaxAttempts: 1}},
		Concurrency: &Concurrency{Key: "${context.a}", Limit: 1}}
	require.NoError(t, r.Add(good))
	require.Equal(t, PolicyQueue, good.Concurrency.Policy)
	key, err := good.ConcurrencyKey(json.RawMessage(`{"a": "x"}`))
	require.NoError(t, err)
	require.Equal(t, "x", key)
}
