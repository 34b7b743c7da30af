package engine_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

// shutdownDuringRescue is a store whose StepTransition (the rescue's
// transaction) first ends the caller's context, as a runner's shutdown can
// while a rescue runs.
type shutdownDuringRescue struct {
	store.Store
	shutdown func()
}

func (s *shutdownDuringRescue) StepTransition(ctx context.Context, p *store.StepTransitionParams) (*store.StepTransitionResult, error) {
	s.shutdown()
	return s.Store.StepTransition(ctx, p)
}

// A rescue that has begun finishes and publishes task.reenqueue even when
// the runner shuts down meanwhile: cut off, its commit could take effect
// without the event event-based workers wait for.
func TestRescueBegunFinishesThroughShutdown(t *testing.T) {
	for name, open := range map[string]func(testing.TB) store.Store{
		"sqlite":   func(tb testing.TB) store.Store { return testdb.SQLite(tb) },
		"postgres": func(tb testing.TB) store.Store { return testdb.Postgres(tb) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, shutdown := context.WithCancel(context.Background())
			defer shutdown()
			st := &shutdownDuringRescue{Store: open(t), shutdown: shutdown}
			reg := template.NewRegistry()
			tmpl, errs := template.Parse("one.yaml", []byte("name: one\nnamespace_name: t\nstep_templates:\n  - {name: only, handler_class: H}\n"), "")
			require.Empty(t, errs)
			require.NoError(t, reg.Add(tmpl))
			e, err := engine.New(engine.Config{Store: st, Templates: reg, EnqueueHandler: engine.EventEnqueueHandler{}})
			require.NoError(t, err)
			task, _, err := e.InitializeTask(context.Background(), &engine.TaskRequest{Namespace: "t", Name: "one"})
			require.NoError(t, err)
			// A coordinator that died holding the step: its lease has expired.
			now := time.Now()
			_, _, claimed, err := st.TaskStartAndClaim(context.Background(), &store.TaskTransitionParams{TaskID: task.ID,
				From: []taskertype.TaskState{taskertype.TaskStatePending}, To: taskertype.TaskStateInProgress, Event: "start",
				Actor: "dead", Now: now}, &store.StepClaimParams{TaskID: task.ID, Owner: "dead", Now: now, LeaseUntil: now.Add(-time.Second)})
			require.NoError(t, err)
			require.Len(t, claimed, 1)

			events, cancel := e.Bus().Subscribe(16, taskertype.EventTaskReenqueue)
			defer cancel()
			n, err := e.RescueExpired(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			require.Error(t, ctx.Err(), "the runner shut down during the rescue")
			select {
			case ev := <-events:
				require.Equal(t, task.ID, ev.TaskID)
			default:
				t.Fatal("the rescue committed without publishing task.reenqueue")
			}
			steps, err := st.StepList(context.Background(), task.ID)
			require.NoError(t, err)
			require.Equal(t, taskertype.StepStateWaitingForRetry, steps[0].State)
			var meta struct {
				Error struct{ Kind string } `json:"error"`
			}
			trs, err := st.StepTransitions(context.Background(), task.ID)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(trs[len(trs)-1].Metadata, &meta))
			require.Equal(t, "lease_expired", meta.Error.Kind)

			// A sweep that starts after the shutdown begins no rescue.
			n, err = e.RescueExpired(ctx)
			require.Equal(t, 0, n)
			_ = err // the expired-lease query itself may report the cancelled context
		})
	}
}
