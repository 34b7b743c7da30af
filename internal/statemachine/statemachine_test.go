package statemachine

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/tasker-systems/tasker/taskertype"
)

// The expected outcomes are written out independently of the rows in
// statemachine.go: "to" for a move, "=" for an idempotent repeat; a missing
// pair must be refused.
var wantTask = map[string]string{
	"pending/start":           "in_progress",
	"waiting_for_retry/start": "in_progress",
	"in_progress/start":       "=",

	"in_progress/complete": "complete",
	"complete/complete":    "=",

	"in_progress/fail": "error",
	"error/fail":       "=",

	"in_progress/block": "blocked",
	"blocked/block":     "=",

	"in_progress/wait":       "waiting_for_retry",
	"waiting_for_retry/wait": "=",

	"in_progress/yield": "pending",
	"pending/yield":     "=",

	"pending/cancel":           "cancelled",
	"in_progress/cancel":       "cancelled",
	"waiting_for_retry/cancel": "cancelled",
	"blocked/cancel":           "cancelled",
	"error/cancel":             "cancelled",

	"pending/resolve":           "resolved_manually",
	"waiting_for_retry/resolve": "resolved_manually",
	"blocked/resolve":           "resolved_manually",
	"error/resolve":             "resolved_manually",

	"error/retry":              "pending",
	"blocked/retry":            "pending",
	"pending/expire":           "error",
	"in_progress/expire":       "error",
	"waiting_for_retry/expire": "error",
	"error/expire":             "=",
}

var wantStep = map[string]string{
	"pending/claim":           "in_progress",
	"waiting_for_retry/claim": "in_progress",

	"in_progress/succeed":       "complete",
	"waiting_for_retry/succeed": "complete", // a late success of a rescued attempt
	"complete/succeed":          "=",

	"in_progress/fail_retryable": "waiting_for_retry",

	"in_progress/fail_permanent": "error",
	"error/fail_permanent":       "=",

	"in_progress/release": "pending",

	"error/retry":             "pending",
	"waiting_for_retry/retry": "pending",

	"pending/resolve":           "resolved_manually",
	"in_progress/resolve":       "resolved_manually",
	"waiting_for_retry/resolve": "resolved_manually",
	"error/resolve":             "resolved_manually",

	"pending/cancel":           "cancelled",
	"in_progress/cancel":       "cancelled",
	"waiting_for_retry/cancel": "cancelled",
	"error/cancel":             "cancelled",

	"in_progress/skip": "skipped",
	"skipped/skip":     "=",

	"in_progress/expand":   "pending",
	"in_progress/throttle": "waiting_for_retry",
}

func requireRefused(t *testing.T, err error, entity, from, ev string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, taskertype.ErrInvalidTransition)
	var ite *taskertype.InvalidTransitionError
	require.True(t, errors.As(err, &ite))
	require.Equal(t, entity, ite.Entity)
	require.Equal(t, from, ite.From)
	require.Equal(t, ev, ite.Event)
	require.Zero(t, ite.ID)
	require.Contains(t, err.Error(), from)
	require.Contains(t, err.Error(), ev)
}

func TestTaskEveryPair(t *testing.T) {
	states := append(slices.Clone(taskertype.TaskStates()), "", "bogus")
	events := append(TaskEvents(), "", "explode")
	seen := 0
	for _, from := range states {
		for _, ev := range events {
			key := string(from) + "/" + string(ev)
			t.Run(key, func(t *testing.T) {
				to, changed, err := Task(from, ev)
				want, ok := wantTask[key]
				switch {
				case !ok:
					requireRefused(t, err, "task", string(from), string(ev))
					require.Equal(t, from, to)
					require.False(t, changed)
					require.NotContains(t, TaskSources(ev), from)
				case want == "=":
					require.NoError(t, err)
					require.Equal(t, from, to)
					require.False(t, changed)
					require.False(t, ev.Operator(), "operator events are never idempotent")
					require.NotContains(t, TaskSources(ev), from)
				default:
					require.NoError(t, err)
					require.Equal(t, taskertype.TaskState(want), to)
					require.True(t, changed)
					require.Contains(t, TaskSources(ev), from)
				}
			})
			if _, ok := wantTask[key]; ok {
				seen++
			}
		}
	}
	require.Equal(t, len(wantTask), seen, "every expected pair uses a declared state and event")
	require.Len(t, TaskRows(), len(wantTask))
}

func TestStepEveryPair(t *testing.T) {
	states := append(slices.Clone(taskertype.StepStates()), "", "bogus")
	events := append(StepEvents(), "", "explode")
	seen := 0
	for _, from := range states {
		for _, ev := range events {
			key := string(from) + "/" + string(ev)
			t.Run(key, func(t *testing.T) {
				to, changed, err := Step(from, ev)
				want, ok := wantStep[key]
				switch {
				case !ok:
					requireRefused(t, err, "step", string(from), string(ev))
					require.Equal(t, from, to)
					require.False(t, changed)
					require.NotContains(t, StepSources(ev), from)
				case want == "=":
					require.NoError(t, err)
					require.Equal(t, from, to)
					require.False(t, changed)
					require.False(t, ev.Operator(), "operator events are never idempotent")
					require.NotContains(t, StepSources(ev), from)
				default:
					require.NoError(t, err)
					require.Equal(t, taskertype.StepState(want), to)
					require.True(t, changed)
					require.Contains(t, StepSources(ev), from)
				}
			})
			if _, ok := wantStep[key]; ok {
				seen++
			}
		}
	}
	require.Equal(t, len(wantStep), seen, "every expected pair uses a declared state and event")
	require.Len(t, StepRows(), len(wantStep))
}

func TestRowsAreWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range TaskRows() {
		key := string(r.From) + "/" + string(r.Event)
		require.False(t, seen[key], "duplicate task row %s", key)
		seen[key] = true
		require.Contains(t, taskertype.TaskStates(), r.From)
		require.Contains(t, taskertype.TaskStates(), r.To)
		require.Contains(t, TaskEvents(), r.Event)
		require.Equal(t, r.Idempotent, r.From == r.To, "task row %s", key)
	}
	seen = map[string]bool{}
	for _, r := range StepRows() {
		key := string(r.From) + "/" + string(r.Event)
		require.False(t, seen[key], "duplicate step row %s", key)
		seen[key] = true
		require.Contains(t, taskertype.StepStates(), r.From)
		require.Contains(t, taskertype.StepStates(), r.To)
		require.Contains(t, StepEvents(), r.Event)
		require.Equal(t, r.Idempotent, r.From == r.To, "step row %s", key)
	}
}

func TestSources(t *testing.T) {
	require.Equal(t, []taskertype.TaskState{"pending", "waiting_for_retry"}, TaskSources(TaskEventStart))
	require.Equal(t, []taskertype.TaskState{"pending", "in_progress", "waiting_for_retry", "blocked", "error"},
		TaskSources(TaskEventCancel))
	require.Equal(t, []taskertype.TaskState{"pending", "waiting_for_retry", "blocked", "error"},
		TaskSources(TaskEventResolve))
	require.Equal(t, []taskertype.TaskState{"blocked", "error"}, TaskSources(TaskEventRetry))
	require.Equal(t, []taskertype.TaskState{"in_progress"}, TaskSources(TaskEventComplete))
	require.Nil(t, TaskSources("explode"))

	require.Equal(t, []taskertype.StepState{"pending", "waiting_for_retry"}, StepSources(StepEventClaim))
	require.Equal(t, []taskertype.StepState{"waiting_for_retry", "error"}, StepSources(StepEventRetry))
	require.Equal(t, []taskertype.StepState{"pending", "in_progress", "waiting_for_retry", "error"},
		StepSources(StepEventCancel))
	require.Equal(t, []taskertype.StepState{"in_progress"}, StepSources(StepEventFailPermanent))
	require.Nil(t, StepSources("explode"))

	// Sources are in lifecycle order and callers may not corrupt them.
	for _, ev := range TaskEvents() {
		src := TaskSources(ev)
		require.True(t, slices.IsSortedFunc(src, func(a, b taskertype.TaskState) int {
			return slices.Index(taskertype.TaskStates(), a) - slices.Index(taskertype.TaskStates(), b)
		}), "task sources of %s", ev)
		if len(src) > 0 {
			src[0] = "bogus"
			require.NotContains(t, TaskSources(ev), taskertype.TaskState("bogus"))
		}
	}
	for _, ev := range StepEvents() {
		src := StepSources(ev)
		require.True(t, slices.IsSortedFunc(src, func(a, b taskertype.StepState) int {
			return slices.Index(taskertype.StepStates(), a) - slices.Index(taskertype.StepStates(), b)
		}), "step sources of %s", ev)
		if len(src) > 0 {
			src[0] = "bogus"
			require.NotContains(t, StepSources(ev), taskertype.StepState("bogus"))
		}
	}
	rows := TaskRows()
	rows[0].To = "bogus"
	require.NotEqual(t, taskertype.TaskState("bogus"), TaskRows()[0].To)
}

// absorbing states: no event, engine or operator, ever moves out of them.
var (
	taskAbsorbing = []taskertype.TaskState{"complete", "cancelled", "resolved_manually"}
	stepAbsorbing = []taskertype.StepState{"complete", "cancelled", "resolved_manually"}
)

func TestTaskRandomWalk(t *testing.T) {
	events := append(TaskEvents(), "explode")
	rapid.Check(t, func(t *rapid.T) {
		state := taskertype.TaskStatePending
		n := rapid.IntRange(0, 60).Draw(t, "n")
		for i := range n {
			ev := rapid.SampledFrom(events).Draw(t, "event")
			to, changed, err := Task(state, ev)
			if err != nil {
				if !errors.Is(err, taskertype.ErrInvalidTransition) {
					t.Fatalf("step %d: %s on %s: unexpected error %v", i, ev, state, err)
				}
				if to != state || changed {
					t.Fatalf("refused move changed state: %s -> %s", state, to)
				}
				continue
			}
			if !slices.Contains(taskertype.TaskStates(), to) {
				t.Fatalf("%s on %s reached undeclared state %q", ev, state, to)
			}
			if changed != (to != state) {
				t.Fatalf("%s on %s: changed=%v but %s -> %s", ev, state, changed, state, to)
			}
			if changed != slices.Contains(TaskSources(ev), state) {
				t.Fatalf("%s on %s: changed=%v disagrees with TaskSources", ev, state, changed)
			}
			if changed && slices.Contains(taskAbsorbing, state) {
				t.Fatalf("terminal task state %s left via %s", state, ev)
			}
			if changed && state == taskertype.TaskStateError && !ev.Operator() {
				t.Fatalf("task left error via engine event %s", ev)
			}
			state = to
		}
	})
}

func TestStepRandomWalk(t *testing.T) {
	events := append(StepEvents(), "explode")
	rapid.Check(t, func(t *rapid.T) {
		state := taskertype.StepStatePending
		n := rapid.IntRange(0, 60).Draw(t, "n")
		for i := range n {
			ev := rapid.SampledFrom(events).Draw(t, "event")
			to, changed, err := Step(state, ev)
			if err != nil {
				if !errors.Is(err, taskertype.ErrInvalidTransition) {
					t.Fatalf("step %d: %s on %s: unexpected error %v", i, ev, state, err)
				}
				if to != state || changed {
					t.Fatalf("refused move changed state: %s -> %s", state, to)
				}
				continue
			}
			if !slices.Contains(taskertype.StepStates(), to) {
				t.Fatalf("%s on %s reached undeclared state %q", ev, state, to)
			}
			if changed != (to != state) {
				t.Fatalf("%s on %s: changed=%v but %s -> %s", ev, state, changed, state, to)
			}
			if changed != slices.Contains(StepSources(ev), state) {
				t.Fatalf("%s on %s: changed=%v disagrees with StepSources", ev, state, changed)
			}
			if changed && slices.Contains(stepAbsorbing, state) {
				t.Fatalf("terminal step state %s left via %s", state, ev)
			}
			if changed && state == taskertype.StepStateError && !ev.Operator() {
				t.Fatalf("step left error via engine event %s", ev)
			}
			// Only claim puts a step in progress: an attempt always has a lease.
			if changed && to == taskertype.StepStateInProgress && ev != StepEventClaim {
				t.Fatalf("step entered in_progress via %s", ev)
			}
			state = to
		}
	})
}

// TestDocDrawsEveryRow keeps docs/state_machine.md in step with the tables:
// the first mermaid block draws the task machine, the second the step machine.
func TestDocDrawsEveryRow(t *testing.T) {
	raw, err := os.ReadFile("../../docs/state_machine.md")
	require.NoError(t, err)
	var blocks []string
	rest := string(raw)
	for {
		_, after, ok := strings.Cut(rest, "```mermaid")
		if !ok {
			break
		}
		block, tail, ok := strings.Cut(after, "```")
		require.True(t, ok, "unterminated mermaid block")
		blocks = append(blocks, block)
		rest = tail
	}
	require.Len(t, blocks, 2)
	edges := func(block string) []string {
		var out []string
		for line := range strings.Lines(block) {
			line = strings.TrimSpace(line)
			if strings.Contains(line, "-->") && !strings.Contains(line, "[*]") {
				out = append(out, line)
			}
		}
		slices.Sort(out)
		return out
	}
	var wantTaskEdges, wantStepEdges []string
	for _, r := range TaskRows() {
		wantTaskEdges = append(wantTaskEdges, string(r.From)+" --> "+string(r.To)+" : "+string(r.Event))
	}
	for _, r := range StepRows() {
		wantStepEdges = append(wantStepEdges, string(r.From)+" --> "+string(r.To)+" : "+string(r.Event))
	}
	slices.Sort(wantTaskEdges)
	slices.Sort(wantStepEdges)
	require.Equal(t, wantTaskEdges, edges(blocks[0]), "task diagram")
	require.Equal(t, wantStepEdges, edges(blocks[1]), "step diagram")
}
