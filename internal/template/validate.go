package template

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/Masterminds/semver/v3"
	"github.com/tasker-systems/tasker/taskertype"
)

// BuiltinHandlers lists the step handlers built into the engine. A
// handler_class that starts with "tasker:" must be one of them; any other
// handler_class names a handler the application registers.
var BuiltinHandlers = []string{"tasker:noop", "tasker:http", "tasker:command", "tasker:fail", "tasker:sleep"}

// builtinPrefix marks built-in handler names.
const builtinPrefix = "tasker:"

// maxIdentLen bounds identifiers (template, namespace, step and environment
// names).
const maxIdentLen = 128

// maxInt is the largest value of an integer field: the store keeps them in
// 32-bit integer columns.
const maxInt = math.MaxInt32

// maxCycleNames bounds the step names a cycle message lists.
const maxCycleNames = 20

var identRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// identProblem explains why s is not an identifier, or returns "".
func identProblem(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > maxIdentLen:
		return fmt.Sprintf("%s is too long (%d bytes, at most %d)", quote(s), len(s), maxIdentLen)
	case !identRe.MatchString(s):
		return fmt.Sprintf("%s is not a valid name: use letters, digits, '_', '.' and '-', starting with a letter or digit", quote(s))
	}
	return ""
}

// handlerProblem explains why s is not a usable handler class name, or
// returns "". Step handlers (isStep) must be non-empty and, when they use
// the "tasker:" prefix, name a built-in handler.
func handlerProblem(s string, isStep bool) string {
	if strings.TrimSpace(s) == "" {
		if isStep || s != "" {
			return "must not be empty"
		}
		return "" // an optional task_handler_class may be omitted
	}
	if strings.TrimSpace(s) != s {
		return fmt.Sprintf("%s has leading or trailing spaces", quote(s))
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Sprintf("%s contains control characters", quote(s))
	}
	if isStep && strings.HasPrefix(s, builtinPrefix) && !slices.Contains(BuiltinHandlers, s) {
		return fmt.Sprintf("unknown built-in handler %s%s; built-in handlers are %s",
			quote(s), didYouMean(s, BuiltinHandlers), strings.Join(BuiltinHandlers, ", "))
	}
	return ""
}

// versionProblem explains why s is not a strict semantic version, or
// returns "".
func versionProblem(s string) string {
	if _, err := semver.StrictNewVersion(s); err != nil {
		return fmt.Sprintf("%s is not a valid semantic version: want MAJOR.MINOR.PATCH such as \"1.0.0\" (%v)", quote(s), err)
	}
	return ""
}

// rangeProblem explains why v is outside [minimum, maxInt], or returns "".
func rangeProblem(v, minimum int64) string {
	switch {
	case v < minimum:
		return fmt.Sprintf("must be at least %d, got %d", minimum, v)
	case v > maxInt:
		return fmt.Sprintf("must be at most %d, got %d", maxInt, v)
	}
	return ""
}

// graphSite tells checkGraph where a step and a dependency were written.
type graphSite interface {
	// step returns the line and field path ("step_templates[i]") of step i.
	step(i int) (line int, field string)
	// dep returns the line and field of step i's dependency on name.
	dep(i int, name string) (line int, field string)
}

// memSite locates problems of a template built in memory: lines come from
// StepTemplate.Line, fields from the step's position.
type memSite struct{ t *Template }

func (m memSite) step(i int) (int, string) {
	return m.t.Steps[i].Line, fmt.Sprintf("step_templates[%d]", i)
}

func (m memSite) dep(i int, _ string) (int, string) {
	return m.t.Steps[i].Line, fmt.Sprintf("step_templates[%d].depends_on_steps", i)
}

// checkGraph reports duplicate step names, unknown parents (except names in
// ignore), self-dependencies and cycles. Steps with an empty name are
// skipped (their missing name is reported elsewhere).
func checkGraph(t *Template, site graphSite, ignore map[string]bool) []*taskertype.TemplateError {
	var errs []*taskertype.TemplateError
	add := func(line int, field, step, format string, args ...any) {
		errs = append(errs, &taskertype.TemplateError{File: t.File, Line: line, Field: field, Step: clip(step), Msg: fmt.Sprintf(format, args...)})
	}
	index := map[string]int{}
	var names []string
	for i, s := range t.Steps {
		if s == nil || s.Name == "" {
			continue
		}
		if j, dup := index[s.Name]; dup {
			line, field := site.step(i)
			first, firstField := site.step(j)
			where := firstField
			if first > 0 {
				where = fmt.Sprintf("line %d", first)
			}
			add(line, field+".name", s.Name, "duplicate step name %q (first defined at %s)", s.Name, where)
			continue
		}
		index[s.Name] = i
		names = append(names, s.Name)
	}

	parents := make([][]int, len(t.Steps)) // parents[i]: steps i depends on
	for i, s := range t.Steps {
		if s == nil {
			continue
		}
		for _, d := range s.DependsOn {
			line, field := site.dep(i, d)
			if d == s.Name && d != "" {
				add(line, field, s.Name, "step depends on itself")
				continue
			}
			j, ok := index[d]
			if !ok {
				if !ignore[d] {
					add(line, field, s.Name, "depends on unknown step %s%s", quote(d), didYouMean(d, names))
				}
				continue
			}
			parents[i] = append(parents[i], j)
		}
	}

	for _, cycle := range findCycles(parents) {
		labels := make([]string, 0, maxCycleNames+2)
		for k, i := range cycle {
			if k == maxCycleNames && len(cycle) > maxCycleNames+1 {
				labels = append(labels, fmt.Sprintf("... (%d more)", len(cycle)-maxCycleNames-1), t.Steps[cycle[len(cycle)-1]].Name)
				break
			}
			labels = append(labels, t.Steps[i].Name)
		}
		labels = append(labels, t.Steps[cycle[0]].Name)
		line, field := site.dep(cycle[0], t.Steps[cycle[1]].Name)
		add(line, field, t.Steps[cycle[0]].Name, "cycle: %s (each step depends on the next)", strings.Join(labels, " -> "))
	}
	return errs
}

// findCycles returns one cycle per strongly connected component of more
// than one step, each starting at the component's first step in template
// order and following edges (i depends on edges[i][k]). Components are
// returned in template order of their first step.
func findCycles(edges [][]int) [][]int {
	n := len(edges)
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	var comps [][]int
	next := 0
	var visit func(v int)
	visit = func(v int) { // Tarjan's algorithm
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range edges[v] {
			if index[w] < 0 {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var comp []int
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				comp = append(comp, w)
				if w == v {
					break
				}
			}
			if len(comp) > 1 {
				comps = append(comps, comp)
			}
		}
	}
	for v := range n {
		if index[v] < 0 {
			visit(v)
		}
	}

	var cycles [][]int
	for _, comp := range comps {
		in := map[int]bool{}
		start := comp[0]
		for _, v := range comp {
			in[v] = true
			start = min(start, v)
		}
		// Shortest path from start back to start inside the component.
		prev := map[int]int{}
		queue := []int{start}
		found := -1
		for len(queue) > 0 && found < 0 {
			v := queue[0]
			queue = queue[1:]
			for _, w := range edges[v] {
				if !in[w] {
					continue
				}
				if w == start {
					found = v
					break
				}
				if _, seen := prev[w]; !seen {
					prev[w] = v
					queue = append(queue, w)
				}
			}
		}
		if found < 0 {
			continue // cannot happen in a strongly connected component
		}
		cycle := []int{found}
		for v := found; v != start; {
			v = prev[v]
			cycle = append(cycle, v)
		}
		slices.Reverse(cycle)
		cycles = append(cycles, cycle)
	}
	slices.SortFunc(cycles, func(a, b []int) int { return a[0] - b[0] })
	return cycles
}

// checkTemplate validates a template built in memory (Registry.Add): every
// rule Parse enforces on values, plus the step graph. Lines come from
// StepTemplate.Line.
func checkTemplate(t *Template) taskertype.TemplateErrors {
	var errs taskertype.TemplateErrors
	add := func(line int, field, step, msg string) {
		errs = append(errs, &taskertype.TemplateError{File: t.File, Line: line, Field: field, Step: clip(step), Msg: msg})
	}
	if msg := identProblem(t.Name); msg != "" {
		add(t.line, "name", "", msg)
	}
	if msg := identProblem(t.Namespace); msg != "" {
		add(0, "namespace_name", "", msg)
	}
	if msg := versionProblem(t.Version); msg != "" {
		add(0, "version", "", msg)
	}
	if msg := handlerProblem(t.TaskHandlerClass, false); msg != "" {
		add(0, "task_handler_class", "", msg)
	}
	if msg := rangeProblem(int64(t.MaxParallelSteps), 1); msg != "" {
		add(0, "max_parallel_steps", "", msg)
	}
	if len(t.Steps) == 0 {
		add(0, "step_templates", "", "a template needs at least one step")
	}
	if field, msg := t.Concurrency.compile(); msg != "" {
		add(0, field, "", msg)
	}
	for i, s := range t.Steps {
		field := fmt.Sprintf("step_templates[%d]", i)
		if s == nil {
			add(0, field, "", "step is nil")
			continue
		}
		if msg := identProblem(s.Name); msg != "" {
			add(s.Line, field+".name", s.Name, msg)
		}
		if msg := handlerProblem(s.HandlerClass, true); msg != "" {
			add(s.Line, field+".handler_class", s.Name, msg)
		}
		if msg := rangeProblem(int64(s.MaxAttempts), 1); msg != "" {
			add(s.Line, field+".default_retry_limit", s.Name, msg)
		}
		if msg := rangeProblem(int64(s.TimeoutSeconds), 0); msg != "" {
			add(s.Line, field+".timeout_seconds", s.Name, msg)
		}
		if path, deep := tooDeep(s.HandlerConfig, "", 1); deep {
			add(s.Line, field+".handler_config", s.Name, fmt.Sprintf(
				"%s: nested more than %d levels deep (the limit for a schema or handler_config)", where(path), MaxNestingDepth))
		}
	}
	if len(errs) > 0 {
		return errs // the graph check needs non-nil steps
	}
	errs = append(errs, checkGraph(t, memSite{t}, nil)...)
	return errs
}

// didYouMean returns ` (did you mean "x"?)` for the candidate closest to s,
// or "" when none is within edit distance 2.
func didYouMean(s string, candidates []string) string {
	if c := suggest(s, candidates); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

// suggest returns the candidate closest to s within edit distance 2 (the
// first one on ties), or "". For words of up to 3 characters the distance
// must be 1, so that "zz" does not suggest "a".
func suggest(s string, candidates []string) string {
	maxDist := 2
	if utf8.RuneCountInString(s) <= 3 {
		maxDist = 1
	}
	best, bestDist := "", maxDist+1
	for _, c := range candidates {
		if c == s {
			continue
		}
		if d := editDistance(s, c, maxDist); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance returns the Levenshtein distance between a and b (in runes),
// or limit+1 when it is larger than limit.
func editDistance(a, b string, limit int) int {
	ra, rb := []rune(a), []rune(b)
	if d := len(ra) - len(rb); d > limit || -d > limit {
		return limit + 1
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin > limit {
			return limit + 1
		}
		prev, cur = cur, prev
	}
	if prev[len(rb)] > limit {
		return limit + 1
	}
	return prev[len(rb)]
}

// tooDeep returns the JSON pointer of the first map or slice of v (at path,
// depth levels deep) nested deeper than MaxNestingDepth. It never looks
// further than that, so a value that contains itself is reported, not
// followed forever.
func tooDeep(v any, path string, depth int) (string, bool) {
	switch x := v.(type) {
	case map[string]any:
		if depth > MaxNestingDepth {
			return path, true
		}
		for k, e := range x {
			if p, deep := tooDeep(e, path+"/"+escapePointer(k), depth+1); deep {
				return p, true
			}
		}
	case []any:
		if depth > MaxNestingDepth {
			return path, true
		}
		for i, e := range x {
			if p, deep := tooDeep(e, fmt.Sprintf("%s/%d", path, i), depth+1); deep {
				return p, true
			}
		}
	}
	return "", false
}
