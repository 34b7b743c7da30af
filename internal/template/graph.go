package template

import (
	"fmt"
	"slices"
	"strings"
)

// TopoOrder returns the steps with every step after all of its parents.
// It is stable: whenever several steps are ready, the one that comes first
// in the template goes first, so a template already written in dependency
// order comes back unchanged. Steps in a cycle, or behind one, are left out
// (a template returned by Parse or accepted by Registry.Add has none);
// unknown parents are ignored.
func (t *Template) TopoOrder() []*StepTemplate {
	index := make(map[string]int, len(t.Steps))
	for i, s := range t.Steps {
		if _, dup := index[s.Name]; !dup {
			index[s.Name] = i
		}
	}
	waiting := make([]int, len(t.Steps)) // unfinished parents per step
	children := make([][]int, len(t.Steps))
	for i, s := range t.Steps {
		seen := map[int]bool{}
		for _, d := range s.DependsOn {
			if j, ok := index[d]; ok && j != i && !seen[j] {
				seen[j] = true
				waiting[i]++
				children[j] = append(children[j], i)
			}
		}
	}
	var ready []int // kept sorted by template position
	for i, w := range waiting {
		if w == 0 {
			ready = append(ready, i)
		}
	}
	out := make([]*StepTemplate, 0, len(t.Steps))
	for len(ready) > 0 {
		i := ready[0]
		ready = ready[1:]
		out = append(out, t.Steps[i])
		for _, c := range children[i] {
			if waiting[c]--; waiting[c] == 0 {
				at, _ := slices.BinarySearch(ready, c)
				ready = slices.Insert(ready, at, c)
			}
		}
	}
	return out
}

// Parents returns the names of the steps the named step depends on, in
// template order of its depends_on lists, or nil for an unknown step.
func (t *Template) Parents(step string) []string {
	if s := t.Step(step); s != nil {
		return slices.Clone(s.DependsOn)
	}
	return nil
}

// Children returns the names of the steps that depend on the named step, in
// template order.
func (t *Template) Children(step string) []string {
	var out []string
	for _, s := range t.Steps {
		if slices.Contains(s.DependsOn, step) {
			out = append(out, s.Name)
		}
	}
	return out
}

// Mermaid renders the step graph as a mermaid flowchart ("graph TD"). Each
// step is a node s<i> (its template position) labelled with its name and
// handler class; each dependency is an edge parent --> child.
func Mermaid(t *Template) string {
	var b strings.Builder
	b.WriteString("graph TD\n")
	index := map[string]int{}
	for i, s := range t.Steps {
		if _, dup := index[s.Name]; !dup {
			index[s.Name] = i
		}
		fmt.Fprintf(&b, "    s%d[\"%s<br/>%s\"]\n", i, mermaidText(s.Name), mermaidText(s.HandlerClass))
	}
	for i, s := range t.Steps {
		for _, d := range s.DependsOn {
			if j, ok := index[d]; ok {
				fmt.Fprintf(&b, "    s%d --> s%d\n", j, i)
			}
		}
	}
	return b.String()
}

// mermaidText escapes label text with mermaid entity codes.
func mermaidText(s string) string {
	return strings.NewReplacer(
		"#", "#35;", `"`, "#quot;", "<", "#lt;", ">", "#gt;", "\n", " ", "\r", " ",
	).Replace(s)
}

// DOT renders the step graph as a graphviz digraph named after the
// template key. Nodes are the step names, labelled with name and handler
// class; each dependency is an edge "parent" -> "child".
func DOT(t *Template) string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n", dotQuote(t.Key()))
	b.WriteString("    rankdir=TB;\n    node [shape=box];\n")
	for _, s := range t.Steps {
		fmt.Fprintf(&b, "    %s [label=%s];\n", dotQuote(s.Name), dotQuote(s.Name+"\n"+s.HandlerClass))
	}
	known := map[string]bool{}
	for _, s := range t.Steps {
		known[s.Name] = true
	}
	for _, s := range t.Steps {
		for _, d := range s.DependsOn {
			if known[d] {
				fmt.Fprintf(&b, "    %s -> %s;\n", dotQuote(d), dotQuote(s.Name))
			}
		}
	}
	b.WriteString("}\n")
	return b.String()
}

// dotQuote renders s as a DOT quoted string (newlines become \n).
func dotQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", "").Replace(s) + `"`
}
