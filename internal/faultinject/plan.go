package faultinject

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Namespace is the template namespace of every harness template.
const Namespace = "fi"

// HandlerClass is the one Go handler every harness step uses.
const HandlerClass = "FaultInject"

// MaxAttempts is every harness step's max_attempts. It is high enough that
// planned failures (at most 2 per step) plus a few attempts lost to killed
// runners still leave a successful attempt.
const MaxAttempts = 8

// Shape is a DAG of named steps: Parents maps a step to its parents.
type Shape struct {
	Name    string
	Steps   []string
	Parents map[string][]string
	// MaxParallel is the template's max_parallel_steps (0: 4).
	MaxParallel int
}

// WideShape names the shape of a few tasks per run (Config.WideTasks): a
// root, 600 leaves and a join, with max_parallel_steps 1,000, so that a
// coordinator claims the leaves as two claims at once and records them as
// two transactions at once (see engine.claimInBackground) while runners
// are killed.
const WideShape = "wide"

// Shapes returns the harness's task shapes: linear, diamond, fan-out,
// three random DAGs (fixed, so that every runner loads the same
// templates) and, last, the wide fan-out.
func Shapes() []Shape {
	shapes := []Shape{
		newShape("linear", "a", "b<a", "c<b", "d<c", "e<d"),
		newShape("diamond", "a", "b<a", "c<a", "d<b,c"),
		newShape("fanout", "root", "l1<root", "l2<root", "l3<root", "l4<root", "l5<root", "l6<root",
			"join<l1,l2,l3,l4,l5,l6"),
	}
	for i := range 3 {
		shapes = append(shapes, randomShape(fmt.Sprintf("random%d", i+1), 7+i, uint64(100+i)))
	}
	specs := []string{"root"}
	leaves := make([]string, 600)
	for i := range leaves {
		leaves[i] = fmt.Sprintf("l%03d", i)
		specs = append(specs, leaves[i]+"<root")
	}
	wide := newShape(WideShape, append(specs, "join<"+strings.Join(leaves, ","))...)
	wide.MaxParallel = 1000
	return append(shapes, wide)
}

func newShape(name string, specs ...string) Shape {
	s := Shape{Name: name, Parents: map[string][]string{}}
	for _, spec := range specs {
		step, parents, _ := strings.Cut(spec, "<")
		s.Steps = append(s.Steps, step)
		if parents != "" {
			s.Parents[step] = strings.Split(parents, ",")
		}
	}
	return s
}

// randomShape is a random DAG: each step depends on a random subset of the
// earlier ones (edges only point forward, so there is no cycle).
func randomShape(name string, n int, seed uint64) Shape {
	r := rand.New(rand.NewPCG(seed, seed))
	s := Shape{Name: name, Parents: map[string][]string{}}
	for i := range n {
		step := fmt.Sprintf("s%02d", i)
		s.Steps = append(s.Steps, step)
		for j := range i {
			if r.Float64() < 0.3 {
				s.Parents[step] = append(s.Parents[step], fmt.Sprintf("s%02d", j))
			}
		}
	}
	return s
}

// YAML renders the shape as a task template.
func (s Shape) YAML() string {
	var b strings.Builder
	mps := s.MaxParallel
	if mps == 0 {
		mps = 4
	}
	fmt.Fprintf(&b, "name: %s\nnamespace_name: %s\nversion: 1.0.0\nmax_parallel_steps: %d\nstep_templates:\n", s.Name, Namespace, mps)
	for _, st := range s.Steps {
		fmt.Fprintf(&b, "  - name: %s\n    handler_class: %s\n    default_retryable: true\n    default_retry_limit: %d\n", st, HandlerClass, MaxAttempts)
		if ps := s.Parents[st]; len(ps) > 0 {
			fmt.Fprintf(&b, "    depends_on_steps: [%s]\n", strings.Join(ps, ", "))
		}
	}
	return b.String()
}

// WriteTemplates writes every shape's template into dir.
func WriteTemplates(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("templates dir: %w", err)
	}
	for _, s := range Shapes() {
		if err := os.WriteFile(filepath.Join(dir, s.Name+".yml"), []byte(s.YAML()), 0o644); err != nil {
			return fmt.Errorf("write template %s: %w", s.Name, err)
		}
	}
	return nil
}

// Failure modes of a planned step failure.
const (
	ModeRetryable  = "retryable"
	ModePermanent  = "permanent"
	ModeRetryAfter = "retry_after"
)

// StepPlan is what a step's handler does: fail the first Fail attempts (in
// Mode), sleeping SleepMS milliseconds in every attempt.
type StepPlan struct {
	Fail    int    `json:"fail,omitempty"`
	Mode    string `json:"mode,omitempty"`
	SleepMS int    `json:"sleep_ms"`
}

// TaskPlan is carried in the task context under "fi".
type TaskPlan struct {
	Shape string              `json:"shape"`
	Steps map[string]StepPlan `json:"steps"`
}

// Permanent reports whether the plan makes the task fail.
func (p TaskPlan) Permanent() bool {
	for _, sp := range p.Steps {
		if sp.Mode == ModePermanent {
			return true
		}
	}
	return false
}

// NewPlan draws a random plan for a task of shape s. The wide shape's steps
// never fail for good (among 600 leaves one would, and the task would stop
// claiming at once).
func NewPlan(r *rand.Rand, s Shape) TaskPlan {
	p := TaskPlan{Shape: s.Name, Steps: map[string]StepPlan{}}
	for _, st := range s.Steps {
		sp := StepPlan{SleepMS: 5 + r.IntN(60)}
		switch x := r.Float64(); {
		case x < 0.015 && s.Name != WideShape:
			sp.Fail, sp.Mode = 1, ModePermanent
		case x < 0.08:
			sp.Fail, sp.Mode = 1, ModeRetryAfter
		case x < 0.25:
			sp.Fail, sp.Mode = 1+r.IntN(2), ModeRetryable
		}
		p.Steps[st] = sp
	}
	return p
}

// Context renders the task context carrying the plan.
func (p TaskPlan) Context() json.RawMessage {
	b, _ := json.Marshal(map[string]any{"fi": p})
	return b
}

// ShapeByName returns the named shape.
func ShapeByName(name string) (Shape, bool) {
	shapes := Shapes()
	i := slices.IndexFunc(shapes, func(s Shape) bool { return s.Name == name })
	if i < 0 {
		return Shape{}, false
	}
	return shapes[i], true
}
