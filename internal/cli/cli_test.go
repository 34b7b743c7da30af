package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

func TestParseTemplateRef(t *testing.T) {
	for in, want := range map[string]templateRef{
		"shop/order":        {"shop", "order", ""},
		"shop/order@1.2.3":  {"shop", "order", "1.2.3"},
		"welcome":           {"default", "welcome", ""},
		"welcome@0.1.0+b.1": {"default", "welcome", "0.1.0+b.1"},
	} {
		got, err := parseTemplateRef(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "/x", "shop/", "a/b/c", "shop/order@"} {
		_, err := parseTemplateRef(in)
		require.Error(t, err, in)
		require.Equal(t, ExitUsage, classify(err), in)
	}
}

func TestReadContext(t *testing.T) {
	for in, want := range map[string]string{
		"":                 `{}`,
		"  ":               `{}`,
		`{"a": 1}`:         `{"a": 1}`,
		" {\"a\": [1]}\n ": `{"a": [1]}`,
	} {
		got, err := readContext(in, nil)
		require.NoError(t, err, in)
		require.JSONEq(t, want, string(got), in)
	}
	got, err := readContext("@-", strings.NewReader(`{"from": "stdin"}`))
	require.NoError(t, err)
	require.JSONEq(t, `{"from": "stdin"}`, string(got))
	for in, msg := range map[string]string{
		`{"a": `:          "malformed --context",
		`{"a": 1} {}`:     "more than one JSON value",
		`[1]`:             "must be a JSON object, got an array",
		`"x"`:             "must be a JSON object, got a string",
		"@":               "missing file name",
		"{\n  \"a\" 1\n}": "line 2, column",
	} {
		_, err := readContext(in, nil)
		require.ErrorContains(t, err, msg, in)
		require.Equal(t, ExitUsage, classify(err), in)
	}
}

func step(name string, state tasker.StepState, parents ...string) *tasker.Step {
	return &tasker.Step{Name: name, State: state, Parents: parents, MaxAttempts: 3}
}

func TestLayers(t *testing.T) {
	names := func(ls [][]*tasker.Step) [][]string {
		var out [][]string
		for _, l := range ls {
			var n []string
			for _, s := range l {
				n = append(n, s.Name)
			}
			out = append(out, n)
		}
		return out
	}
	diamond := []*tasker.Step{step("a", "complete"), step("b", "complete", "a"), step("c", "error", "a"), step("d", "pending", "b", "c")}
	require.Equal(t, [][]string{{"a"}, {"b", "c"}, {"d"}}, names(layers(diamond)))
	// A step deeper on one side goes below its deepest parent.
	uneven := []*tasker.Step{step("r", ""), step("x", "", "r"), step("y", "", "x"), step("m", "", "r", "y"), step("s", "")}
	require.Equal(t, [][]string{{"r", "s"}, {"x"}, {"y"}, {"m"}}, names(layers(uneven)))
	// Unknown parents are ignored; a cycle does not hang.
	odd := []*tasker.Step{step("p", "", "ghost"), step("q", "", "r"), step("r", "", "q")}
	n := 0
	for _, l := range layers(odd) {
		n += len(l)
	}
	require.Equal(t, 3, n)

	var b bytes.Buffer
	diamond[2].Error = []byte(`{"message": "boom\nagain", "kind": "permanent"}`)
	diamond[2].Attempts = 1
	drawDAG(&b, diamond, stepTimes{}, time.Now(), false)
	require.Equal(t, `  1  · a  complete  0/3
  2  · b  complete  0/3  <- a
     · c  error     1/3  <- a
       last error: boom; again
  3  · d  pending   0/3  <- b, c
`, strings.ReplaceAll(strings.ReplaceAll(b.String(), "✓", "·"), "✗", "·"))
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                    "0ms",
		12 * time.Millisecond:           "12ms",
		1520 * time.Millisecond:         "1.52s",
		3*time.Minute + 5*time.Second:   "3m05s",
		2*time.Hour + 30*time.Second:    "2h0m30s",
		999*time.Millisecond + 999*1000: "999ms",
	} {
		require.Equal(t, want, fmtDuration(d), d.String())
	}
}

func TestTable(t *testing.T) {
	tb := newTable("A", "LONGER", "LAST")
	tb.add([]string{"xyz", "1", "end"}, "", ansiRed)
	tb.add([]string{"é", "22", ""})
	var b bytes.Buffer
	require.NoError(t, tb.write(&b, true))
	require.Equal(t, "A    LONGER  LAST\nxyz  \x1b[31m1     \x1b[0m  end\né    22\n", b.String())
}

func TestMainUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"nope"}, {"run"}, {"run", "a/b", "--bogus"}, {"task"}, {"task", "show", "0"}, {"template", "graph"},
		{"migrate", "down", "--steps", "-1"}, {"--database-url", "mysql://x", "task", "list"},
		{"serve", "--retention", "30s"}, {"serve", "--retention-failed", "a week"}, {"prune", "--older-than", "forever"},
	} {
		var out, errw bytes.Buffer
		code := Main(context.Background(), args, Options{Stdout: &out, Stderr: &errw})
		require.Equal(t, ExitUsage, code, "%v: %s", args, errw.String())
		lines := strings.Split(strings.TrimSpace(errw.String()), "\n")
		require.True(t, strings.HasPrefix(lines[len(lines)-1], "tasker: "), "%v: %s", args, errw.String())
	}
	var out bytes.Buffer
	require.Equal(t, ExitOK, Main(context.Background(), []string{"version"}, Options{Stdout: &out, Version: "v9.9.9"}))
	require.True(t, strings.HasPrefix(out.String(), "tasker v9.9.9 (go"), out.String())
}

func TestRedact(t *testing.T) {
	require.Equal(t, "postgres://u:xxxxx@h/db", redact("postgres://u:secret@h/db"))
	require.Equal(t, "postgres://h/db?password=xxxxx", redact("postgres://h/db?password=secret"))
	require.Equal(t, "sqlite:x.db", redact("sqlite:x.db"))
}

func TestParentListFoldsFanOutChildren(t *testing.T) {
	t.Parallel()
	require.Equal(t, "a, x[0..2], b", parentList([]string{"a", "x[0]", "x[1]", "b", "x[2]"}))
	require.Equal(t, "a, y[0]", parentList([]string{"a", "y[0]"}))
	require.Equal(t, "", parentList(nil))
}
