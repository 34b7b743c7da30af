package bench

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/tasker-systems/tasker/internal/builtin"
	"github.com/tasker-systems/tasker/internal/template"
)

// Shape names a workload: the DAG every task of a run has.
type Shape string

// The workload shapes.
const (
	// ShapeSingle is one step per task: the cost of a whole task lifecycle.
	ShapeSingle Shape = "single"
	// ShapeChain is a linear chain of Width steps (default 4).
	ShapeChain Shape = "chain"
	// ShapeDiamond is a -> (b, c) -> d.
	ShapeDiamond Shape = "diamond"
	// ShapeFanout is one root, Width parallel steps, and one join step.
	ShapeFanout Shape = "fanout"
	// ShapeRandom is a random DAG of Width steps (seeded, reproducible).
	ShapeRandom Shape = "random"
)

// Shapes lists every shape, for flag help and validation.
var Shapes = []Shape{ShapeSingle, ShapeChain, ShapeDiamond, ShapeFanout, ShapeRandom}

// defaultWidth is the step count parameter used when Config.Width is 0.
func (s Shape) defaultWidth() int {
	switch s {
	case ShapeChain:
		return 4
	case ShapeFanout:
		return 1000
	case ShapeRandom:
		return 50
	}
	return 0
}

// defaultTasks is the task count used when Config.Tasks is 0.
func (s Shape) defaultTasks() int {
	switch s {
	case ShapeSingle:
		return 2000
	case ShapeChain, ShapeDiamond:
		return 500
	case ShapeFanout:
		return 1
	case ShapeRandom:
		return 40
	}
	return 100
}

// buildTemplate returns the in-memory template of a shape, every step a no-op.
func buildTemplate(shape Shape, width, maxParallel int, seed uint64) (*template.Template, error) {
	t := &template.Template{Name: "bench_" + string(shape), Namespace: "bench", Version: "1.0.0",
		Description: fmt.Sprintf("tasker bench %s (width %d)", shape, width), MaxParallelSteps: maxParallel}
	step := func(name string, parents ...string) {
		t.Steps = append(t.Steps, &template.StepTemplate{Name: name, HandlerClass: builtin.NoopName,
			DependsOn: parents, Retryable: true, MaxAttempts: 3})
	}
	switch shape {
	case ShapeSingle:
		step("only")
	case ShapeChain:
		if width < 1 {
			return nil, fmt.Errorf("chain needs at least 1 step, got %d", width)
		}
		step("s0")
		for i := 1; i < width; i++ {
			step(fmt.Sprintf("s%d", i), fmt.Sprintf("s%d", i-1))
		}
	case ShapeDiamond:
		step("a")
		step("b", "a")
		step("c", "a")
		step("d", "b", "c")
	case ShapeFanout:
		if width < 1 {
			return nil, fmt.Errorf("fanout needs at least 1 parallel step, got %d", width)
		}
		step("root")
		leaves := make([]string, width)
		for i := range leaves {
			leaves[i] = fmt.Sprintf("leaf_%05d", i)
			step(leaves[i], "root")
		}
		step("join", leaves...)
	case ShapeRandom:
		if width < 1 {
			return nil, fmt.Errorf("random DAG needs at least 1 step, got %d", width)
		}
		r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		for i := range width {
			var parents []string
			if i > 0 && r.IntN(10) > 0 { // about 10% extra roots
				k := 1 + r.IntN(min(3, i))
				seen := map[int]bool{}
				for len(parents) < k {
					p := r.IntN(i)
					if !seen[p] {
						seen[p] = true
						parents = append(parents, fmt.Sprintf("n%03d", p))
					}
				}
			}
			step(fmt.Sprintf("n%03d", i), parents...)
		}
	default:
		names := make([]string, len(Shapes))
		for i, s := range Shapes {
			names[i] = string(s)
		}
		return nil, fmt.Errorf("unknown shape %q (want one of %s)", shape, strings.Join(names, ", "))
	}
	return t, nil
}
