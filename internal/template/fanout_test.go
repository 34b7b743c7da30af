package template

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseFanOut(t *testing.T) {
	t.Parallel()
	src := `name: a
step_templates:
  - {name: list, handler_class: X}
  - name: each
    handler_class: Y
    depends_on_step: list
    default_retry_limit: 2
    fan_out: {over: list, path: data.items, max_items: 50}
  - name: all
    handler_class: X
    depends_on_step: each
    fan_out:
      over: each
  - {name: after, handler_class: X, depends_on_step: all}
`
	tm, errs := Parse("t.yml", []byte(src), "")
	require.Nil(t, errs)
	fo := tm.FanOut("each")
	require.Equal(t, &FanOut{Over: "list", Path: "data.items", MaxItems: 50}, fo)
	require.Same(t, fo, tm.Step("each").FanOut)
	require.Equal(t, []string{"data", "items"}, fo.PathSegments())
	require.Equal(t, &FanOut{Over: "each", MaxItems: FanOutMaxItemsDefault}, tm.FanOut("all"))
	require.Nil(t, tm.FanOut("list"))
	require.Nil(t, tm.FanOut("after"))
	require.Nil(t, tm.FanOut("all").PathSegments())
}

func TestParseFanOutProblems(t *testing.T) {
	t.Parallel()
	head := "name: a\nstep_templates:\n  - {name: list, handler_class: X}\n  - {name: other, handler_class: X}\n  - name: each\n    handler_class: Y\n    depends_on_step: list\n"
	cases := []struct {
		name string
		yaml string
		want problem
	}{{
		name: "over is not a parent",
		yaml: head + "    fan_out: {over: other}\n",
		want: problem{line: 8, field: "step_templates[2].fan_out.over", step: "each",
			msg: []string{"fans out over other, but other is not a parent of each (parents: list)"}},
	}, {
		name: "over missing",
		yaml: head + "    fan_out: {path: items}\n",
		want: problem{line: 8, field: "step_templates[2].fan_out.over", step: "each", msg: []string{"missing required field"}},
	}, {
		name: "not a mapping",
		yaml: head + "    fan_out: list\n",
		want: problem{line: 8, field: "step_templates[2].fan_out", step: "each", msg: []string{"expected a mapping with over"}},
	}, {
		name: "bad path",
		yaml: head + "    fan_out: {over: list, path: \"a..b\"}\n",
		want: problem{line: 8, field: "step_templates[2].fan_out.path", step: "each", msg: []string{"not a dot-separated list of keys"}},
	}, {
		name: "max_items below 1",
		yaml: head + "    fan_out: {over: list, max_items: 0}\n",
		want: problem{line: 8, field: "step_templates[2].fan_out.max_items", step: "each", msg: []string{"must be at least 1"}},
	}, {
		name: "max_items over the limit",
		yaml: head + "    fan_out: {over: list, max_items: 10001}\n",
		want: problem{line: 8, field: "step_templates[2].fan_out.max_items", step: "each", msg: []string{"over the limit of 10000"}},
	}, {
		name: "unknown field",
		yaml: head + "    fan_out:\n      over: list\n      max_item: 3\n",
		want: problem{line: 10, field: "step_templates[2].fan_out.max_item", step: "each", msg: []string{`did you mean "max_items"?`}},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tm, errs := Parse("t.yml", []byte(tc.yaml), "")
			require.Nil(t, tm)
			requireProblems(t, "t.yml", errs, tc.want)
		})
	}
}

func TestFanOutParent(t *testing.T) {
	t.Parallel()
	for child, want := range map[string]struct {
		name  string
		index int
		ok    bool
	}{
		"each[0]": {"each", 0, true}, "each[12]": {"each", 12, true}, "a.b-c[3]": {"a.b-c", 3, true},
		"each": {}, "each[]": {}, "each[01]": {}, "each[x]": {}, "[3]": {}, "each[3": {}, "each[-1]": {},
	} {
		name, index, ok := FanOutParent(child)
		require.Equal(t, want.ok, ok, child)
		if ok {
			require.Equal(t, want.name, name, child)
			require.Equal(t, want.index, index, child)
			require.Equal(t, child, FanOutChild(name, index))
		}
	}
}
