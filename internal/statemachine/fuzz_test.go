package statemachine

import (
	"errors"
	"slices"
	"testing"

	"github.com/tasker-systems/tasker/taskertype"
)

// FuzzTransition feeds arbitrary strings to both machines: they never panic,
// an accepted pair always lands on a declared state, and a refused pair
// keeps the state and reports an InvalidTransitionError.
func FuzzTransition(f *testing.F) {
	f.Add("pending", "start")
	f.Add("in_progress", "claim")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, state, event string) {
		to, changed, err := Task(taskertype.TaskState(state), TaskEvent(event))
		if err != nil {
			var ite *taskertype.InvalidTransitionError
			if !errors.As(err, &ite) || !errors.Is(err, taskertype.ErrInvalidTransition) {
				t.Fatalf("task: unexpected error type %T", err)
			}
			if ite.Entity != "task" || ite.From != state || ite.Event != event {
				t.Fatalf("task: error names %+v", ite)
			}
			if changed || string(to) != state {
				t.Fatalf("task: refused move reported %q changed=%v", to, changed)
			}
		} else {
			if !slices.Contains(taskertype.TaskStates(), taskertype.TaskState(state)) ||
				!slices.Contains(taskertype.TaskStates(), to) {
				t.Fatalf("task: accepted %q/%q -> %q", state, event, to)
			}
			if changed == (string(to) == state) {
				t.Fatalf("task: changed=%v for %q -> %q", changed, state, to)
			}
		}

		sto, schanged, serr := Step(taskertype.StepState(state), StepEvent(event))
		if serr != nil {
			var ite *taskertype.InvalidTransitionError
			if !errors.As(serr, &ite) || !errors.Is(serr, taskertype.ErrInvalidTransition) {
				t.Fatalf("step: unexpected error type %T", serr)
			}
			if ite.Entity != "step" || ite.From != state || ite.Event != event {
				t.Fatalf("step: error names %+v", ite)
			}
			if schanged || string(sto) != state {
				t.Fatalf("step: refused move reported %q changed=%v", sto, schanged)
			}
		} else {
			if !slices.Contains(taskertype.StepStates(), taskertype.StepState(state)) ||
				!slices.Contains(taskertype.StepStates(), sto) {
				t.Fatalf("step: accepted %q/%q -> %q", state, event, sto)
			}
			if schanged == (string(sto) == state) {
				t.Fatalf("step: changed=%v for %q -> %q", schanged, state, sto)
			}
		}
		_ = TaskSources(TaskEvent(event))
		_ = StepSources(StepEvent(event))
	})
}
