package engine_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// slotAsks counts the handler-class admissions sent as statements of their
// own (store.HandlerLimiter), outside any claim's transaction.
type slotAsks struct {
	store.Store
	n atomic.Int64
}

func (s *slotAsks) Unwrap() store.Store { return s.Store }

func (s *slotAsks) HandlerAdmit(ctx context.Context, p *store.HandlerAdmitParams) (*store.HandlerAdmitResult, error) {
	s.n.Add(1)
	return s.Store.(store.HandlerLimiter).HandlerAdmit(ctx, p)
}

func (s *slotAsks) HandlerRunning(ctx context.Context, classes []string) (map[string]int, error) {
	return s.Store.(store.HandlerLimiter).HandlerRunning(ctx, classes)
}

const slotsInClaimTemplate = `
name: slots
namespace_name: hl
max_parallel_steps: 4
handler_limits:
  Hold: 2
step_templates:
  - {name: a, handler_class: Hold}
  - {name: b, handler_class: Hold}
  - {name: c, handler_class: Hold}
  - {name: d, handler_class: Hold, depends_on_steps: [a, b, c], when: context.go}
`

// On both databases the steps of a limited class take their slots in their
// claim's transaction: no admission of its own for them, the limit holds,
// and a refused step waits and runs later. A step with a condition asks
// for its slot after the condition held, in a statement of its own.
func TestHandlerSlotsTakenInTheClaimTransaction(t *testing.T) {
	t.Parallel()
	for name, open := range bothStores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			st := &slotAsks{Store: open(t)}
			reg := template.NewRegistry()
			addTemplate(t, reg, slotsInClaimTemplate)
			e, err := engine.New(engine.Config{Store: st, Templates: reg, RequireHandlers: true})
			require.NoError(t, err)
			t.Cleanup(e.Close)
			var mu sync.Mutex
			running, peak, calls := 0, 0, 0
			release := make(chan struct{})
			e.RegisterHandler("Hold", taskertype.StepHandlerFunc(func(ctx context.Context, s *taskertype.StepContext) (any, error) {
				mu.Lock()
				running++
				calls++
				peak = max(peak, running)
				mu.Unlock()
				if s.StepName != "d" {
					<-release
				}
				mu.Lock()
				running--
				mu.Unlock()
				return "ok", nil
			}))

			task, _, err := e.InitializeTask(ctx, &engine.TaskRequest{Namespace: "hl", Name: "slots",
				Context: json.RawMessage(`{"go": true}`)})
			require.NoError(t, err)
			done := make(chan *engine.HandleResult, 1)
			go func() {
				res, err := e.RunTask(ctx, task.ID)
				if err != nil {
					t.Error(err)
				}
				done <- res
			}()
			// Two of a, b and c hold the class's slots; the third was
			// refused in the claim's transaction and waits.
			require.Eventually(t, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return running == 2
			}, time.Minute, 5*time.Millisecond)
			require.Zero(t, st.n.Load(), "a, b and c took their slots in the claim, not in a statement of their own")
			close(release)
			select {
			case res := <-done:
				require.Equal(t, taskertype.TaskStateComplete, res.Status)
			case <-ctx.Done():
				t.Fatal("the task never completed")
			}
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, 4, calls)
			require.Equal(t, 2, peak, "the limit, never more")
			require.Equal(t, int64(1), st.n.Load(), "d (a condition) asked for its slot once, after its condition held")
		})
	}
}
