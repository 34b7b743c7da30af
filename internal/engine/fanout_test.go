package engine_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/backoff"
	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

const fanOutDoc = `name: fan
namespace_name: t
step_templates:
  - {name: list, handler_class: List}
  - {name: each, handler_class: Each, depends_on_step: list, fan_out: {over: list}}
  - {name: after, handler_class: Each, depends_on_step: each}
`

// A runner that dies holding a fan-out step before its expansion commits
// leaves nothing behind: the rescuer returns the step, another runner
// expands it and the task completes with every item once; the dead
// runner's expansion, should it still arrive, writes nothing.
func TestFanOutRunnerDiesBeforeExpansion(t *testing.T) {
	for name, open := range bothStores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			reg := template.NewRegistry()
			addTemplate(t, reg, fanOutDoc)
			e, err := engine.New(engine.Config{Store: st, Templates: reg, EnqueueHandler: engine.EventEnqueueHandler{},
				Backoff: backoff.Config{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond, Min: time.Millisecond}})
			require.NoError(t, err)
			e.RegisterHandler("List", taskertype.StepHandlerFunc(func(context.Context, *taskertype.StepContext) (any, error) {
				return []string{"x", "y", "z"}, nil
			}))
			e.RegisterHandler("Each", taskertype.StepHandlerFunc(func(_ context.Context, sc *taskertype.StepContext) (any, error) {
				var in struct{ Item string }
				_ = json.Unmarshal(sc.Inputs, &in)
				return in.Item + in.Item, nil
			}))
			ctx := context.Background()
			task, _, err := e.InitializeTask(ctx, &engine.TaskRequest{Namespace: "t", Name: "fan"})
			require.NoError(t, err)

			// The dead runner ran list, then claimed each (its lease has
			// expired) and died before its expansion committed.
			now := time.Now()
			_, _, claimed, err := st.TaskStartAndClaim(ctx, &store.TaskTransitionParams{TaskID: task.ID,
				From: []taskertype.TaskState{taskertype.TaskStatePending}, To: taskertype.TaskStateInProgress, Event: "start",
				Actor: "dead", Now: now}, &store.StepClaimParams{TaskID: task.ID, Owner: "dead", Now: now,
				LeaseUntil: now.Add(time.Minute)})
			require.NoError(t, err)
			require.Len(t, claimed, 1)
			applied, err := st.StepRecord(ctx, &store.StepRecordParams{TaskID: task.ID, Owner: "dead", Now: now,
				Outcomes: []store.StepOutcome{{StepID: claimed[0].Step.ID, To: taskertype.StepStateComplete, Event: "succeed",
					Results: json.RawMessage(`["x","y","z"]`)}}})
			require.NoError(t, err)
			require.Equal(t, []bool{true}, applied)

			later := now.Add(10 * time.Millisecond)
			claimed, err = st.StepClaim(ctx, &store.StepClaimParams{TaskID: task.ID, Owner: "dead", Limit: 10, Now: later,
				LeaseUntil: later.Add(-time.Second)})
			require.NoError(t, err)
			require.Len(t, claimed, 1)
			require.Equal(t, "each", claimed[0].Step.Name)

			n, err := e.RescueExpired(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			require.Eventually(t, func() bool {
				res, err := e.Handle(ctx, task.ID)
				require.NoError(t, err)
				return res.Status == taskertype.TaskStateComplete
			}, time.Minute, 10*time.Millisecond)

			// The dead runner's expansion arrives after all: refused.
			late, err := st.StepFanOut(ctx, &store.StepFanOutParams{TaskID: task.ID, StepID: claimed[0].Step.ID,
				Owner: "dead", Attempt: 1, Event: "expand", Now: time.Now(),
				Children: []store.StepSpec{{Name: "each[3]", HandlerClass: "Each", MaxAttempts: 1}}})
			require.NoError(t, err)
			require.False(t, late.Applied)

			steps, err := st.StepList(ctx, task.ID)
			require.NoError(t, err)
			require.Len(t, steps, 6, "list, each, after and three children, once")
			for _, s := range steps {
				require.Equal(t, taskertype.StepStateComplete, s.State, s.Name)
				if s.Name == "each" {
					require.JSONEq(t, `["xx","yy","zz"]`, string(s.Results))
					require.Equal(t, 2, s.Attempts, "the lost attempt counts; the expansion gives its own back")
				}
			}
		})
	}
}
