package template

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// diamondYAML: fetch -> (parse, enrich) -> store -> notify, plus an
// independent audit step written last and a cleanup written first that
// depends on notify.
const diamondYAML = `name: pipeline
namespace_name: etl
version: 2.1.0
step_templates:
  - name: cleanup
    handler_class: CleanupHandler
    depends_on_step: notify
  - name: fetch
    handler_class: tasker:http
  - name: enrich
    handler_class: EnrichHandler
    depends_on_step: fetch
  - name: parse
    handler_class: ParseHandler
    depends_on_step: fetch
  - name: store
    handler_class: StoreHandler
    depends_on_steps: [parse, enrich]
  - name: notify
    handler_class: tasker:noop
    depends_on_step: store
  - name: audit
    handler_class: "Audit\"Handler<v2>"
`

func names(steps []*StepTemplate) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Name
	}
	return out
}

func TestTopoOrder(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		yaml string
		want []string
	}{{
		name: "ready steps keep template order",
		yaml: diamondYAML,
		want: []string{"fetch", "enrich", "parse", "store", "notify", "cleanup", "audit"},
	}, {
		name: "already ordered template is unchanged",
		yaml: "name: a\nstep_templates:\n  - {name: x, handler_class: X}\n  - {name: y, handler_class: X, depends_on_step: x}\n  - {name: z, handler_class: X}\n",
		want: []string{"x", "y", "z"},
	}, {
		name: "independent steps",
		yaml: "name: a\nstep_templates:\n  - {name: c, handler_class: X}\n  - {name: b, handler_class: X}\n  - {name: a, handler_class: X}\n",
		want: []string{"c", "b", "a"},
	}, {
		name: "reverse chain",
		yaml: "name: a\nstep_templates:\n  - {name: c, handler_class: X, depends_on_step: b}\n  - {name: b, handler_class: X, depends_on_step: a}\n  - {name: a, handler_class: X}\n",
		want: []string{"a", "b", "c"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tm := mustParse(t, tc.yaml)
			got := tm.TopoOrder()
			require.Equal(t, tc.want, names(got))
			pos := map[string]int{}
			for i, s := range got {
				pos[s.Name] = i
			}
			for _, s := range tm.Steps {
				for _, p := range s.DependsOn {
					require.Less(t, pos[p], pos[s.Name], "%s must come after its parent %s", s.Name, p)
				}
			}
		})
	}
}

func TestTopoOrderInMemoryCycle(t *testing.T) {
	t.Parallel()
	tm := &Template{Steps: []*StepTemplate{
		{Name: "free"},
		{Name: "a", DependsOn: []string{"b"}},
		{Name: "b", DependsOn: []string{"a"}},
		{Name: "after", DependsOn: []string{"a", "unknown"}},
	}}
	require.Equal(t, []string{"free"}, names(tm.TopoOrder()), "steps in or behind a cycle are left out")
}

func TestParentsChildren(t *testing.T) {
	t.Parallel()
	tm := mustParse(t, diamondYAML)
	require.Equal(t, []string{"parse", "enrich"}, tm.Parents("store"))
	require.Empty(t, tm.Parents("fetch"))
	require.Nil(t, tm.Parents("missing"))
	require.Equal(t, []string{"enrich", "parse"}, tm.Children("fetch"))
	require.Equal(t, []string{"cleanup"}, tm.Children("notify"))
	require.Empty(t, tm.Children("audit"))

	// The result is a copy.
	p := tm.Parents("store")
	p[0] = "changed"
	require.Equal(t, "parse", tm.Step("store").DependsOn[0])
}

func TestMermaid(t *testing.T) {
	t.Parallel()
	tm := mustParse(t, diamondYAML)
	out := Mermaid(tm)
	require.True(t, strings.HasPrefix(out, "graph TD\n"))
	id := map[string]string{}
	for i, s := range tm.Steps {
		id[s.Name] = fmt.Sprintf("s%d", i)
		require.Contains(t, out, fmt.Sprintf("%s[\"%s<br/>", id[s.Name], s.Name), "node for %s", s.Name)
	}
	require.Contains(t, out, `s1["fetch<br/>tasker:http"]`)
	require.Contains(t, out, `s6["audit<br/>Audit#quot;Handler#lt;v2#gt;"]`, "label text is escaped")
	edges := 0
	for _, s := range tm.Steps {
		for _, p := range s.DependsOn {
			require.Contains(t, out, fmt.Sprintf("    %s --> %s\n", id[p], id[s.Name]), "edge %s -> %s", p, s.Name)
			edges++
		}
	}
	require.Equal(t, edges, strings.Count(out, "-->"))
}

func TestDOT(t *testing.T) {
	t.Parallel()
	tm := mustParse(t, diamondYAML)
	out := DOT(tm)
	require.True(t, strings.HasPrefix(out, `digraph "etl/pipeline@2.1.0" {`))
	require.True(t, strings.HasSuffix(out, "}\n"))
	require.Contains(t, out, `"fetch" [label="fetch\ntasker:http"];`)
	require.Contains(t, out, `"audit" [label="audit\nAudit\"Handler<v2>"];`, "quotes are escaped")
	edges := 0
	for _, s := range tm.Steps {
		for _, p := range s.DependsOn {
			require.Contains(t, out, fmt.Sprintf("    %q -> %q;\n", p, s.Name))
			edges++
		}
	}
	require.Equal(t, edges, strings.Count(out, "->"))
}
