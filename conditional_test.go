package tasker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// conditionalTemplate scores an order, then charges it or sends it to a
// review depending on the score and the amount; notify follows both.
const conditionalTemplate = `name: conditional
namespace_name: test
step_templates:
  - {name: score, handler_class: Score}
  - name: charge
    handler_class: Record
    depends_on_step: score
    when: results.score.risk < 0.5 && context.amount <= 1000
  - name: review
    handler_class: Record
    depends_on_step: score
    when: '!(results.score.risk < 0.5 && context.amount <= 1000)'
  - name: notify
    handler_class: Record
    depends_on_steps: [charge, review]
`

// A step whose when is false is skipped (its handler never runs, no attempt
// counted, step.skipped published) and counts as done for its children;
// explain shows the expression.
func TestConditionalSteps(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		var mu sync.Mutex
		ran := map[int64][]string{}
		deps := map[int64]map[string]json.RawMessage{}
		c.RegisterHandler("Score", tasker.StepHandlerFunc(func(_ context.Context, sc *tasker.StepContext) (any, error) {
			var in struct {
				Risk float64 `json:"risk"`
			}
			if err := json.Unmarshal(sc.Context, &in); err != nil {
				return nil, err
			}
			return map[string]any{"risk": in.Risk}, nil
		}))
		c.RegisterHandler("Record", tasker.StepHandlerFunc(func(_ context.Context, sc *tasker.StepContext) (any, error) {
			mu.Lock()
			defer mu.Unlock()
			ran[sc.TaskID] = append(ran[sc.TaskID], sc.StepName)
			if sc.StepName == "notify" {
				deps[sc.TaskID] = sc.DependencyResults
			}
			return sc.StepName + " done", nil
		}))
		_, err := c.AddTemplate("c.yml", []byte(conditionalTemplate))
		require.NoError(t, err)
		events, unsubscribe := c.Subscribe(tasker.EventStepSkipped)
		defer unsubscribe()

		ctx := context.Background()
		run := func(risk float64, amount int) int64 {
			task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "conditional",
				Context: json.RawMessage(fmt.Sprintf(`{"risk": %g, "amount": %d}`, risk, amount))})
			require.NoError(t, err)
			res, err := c.RunTask(ctx, task.ID)
			require.NoError(t, err)
			require.Equal(t, tasker.TaskState("complete"), res.Status, "task %d", task.ID)
			return task.ID
		}
		safe := run(0.1, 200)
		risky := run(0.9, 200)
		large := run(0.1, 5000)

		require.ElementsMatch(t, []string{"charge", "notify"}, ran[safe])
		require.ElementsMatch(t, []string{"review", "notify"}, ran[risky])
		require.ElementsMatch(t, []string{"review", "notify"}, ran[large])
		require.JSONEq(t, `"charge done"`, string(deps[safe]["charge"]))
		require.JSONEq(t, `"review done"`, string(deps[risky]["review"]))

		states := func(id int64) map[string]tasker.StepState {
			out := map[string]tasker.StepState{}
			for _, st := range stepsOf(t, c, id) {
				out[st.Name] = st.State
				if st.State == "skipped" {
					require.Zero(t, st.Attempts, "a skipped step counts no attempt")
				}
			}
			return out
		}
		require.Equal(t, map[string]tasker.StepState{"score": "complete", "charge": "complete", "review": "skipped",
			"notify": "complete"}, states(safe))
		require.Equal(t, map[string]tasker.StepState{"score": "complete", "charge": "skipped", "review": "complete",
			"notify": "complete"}, states(risky))

		select {
		case ev := <-events:
			require.Equal(t, safe, ev.TaskID)
			require.Equal(t, "review", ev.StepName)
			require.Contains(t, ev.Data["reason"], "when !(results.score.risk < 0.5")
		case <-time.After(time.Minute):
			t.Fatal("no step.skipped event")
		}

		rs, err := c.Explain(ctx, risky)
		require.NoError(t, err)
		for _, r := range rs {
			if r.Name == "charge" {
				require.Equal(t, "skipped: when results.score.risk < 0.5 && context.amount <= 1000 is false", r.Reason)
			}
		}
	})
}

// A when expression that cannot be evaluated (here: a field the parent's
// results do not have) fails its step permanently, naming the expression.
func TestConditionEvaluationErrorFailsStep(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		c.RegisterHandler("Score", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			return map[string]any{"other": 1}, nil
		}))
		c.RegisterHandler("Record", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			return nil, nil
		}))
		_, err := c.AddTemplate("c.yml", []byte(conditionalTemplate))
		require.NoError(t, err)
		ctx := context.Background()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "conditional",
			Context: json.RawMessage(`{"amount": 1}`)})
		require.NoError(t, err)
		res, err := c.RunTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("error"), res.Status)
		for _, st := range stepsOf(t, c, task.ID) {
			if st.Name == "charge" || st.Name == "review" {
				require.Equal(t, tasker.StepState("error"), st.State, st.Name)
				var doc struct{ Kind, Message string }
				require.NoError(t, json.Unmarshal(st.Error, &doc))
				require.Equal(t, "permanent", doc.Kind)
				require.Contains(t, doc.Message, "no such key: risk")
				require.Contains(t, doc.Message, "results.score.risk < 0.5")
			}
		}
	})
}

// The pull API skips a step whose when is false before handing it out: the
// worker is given only the steps to run.
func TestConditionalStepsExternalWorker(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openWorkerClient(t, url)
		_, err := c.AddTemplate("c.yml", []byte(conditionalTemplate))
		require.NoError(t, err)
		ctx := context.Background()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "conditional",
			Context: json.RawMessage(`{"amount": 10}`)})
		require.NoError(t, err)
		w := c.Worker()
		owner := "ruby-worker"
		report := func(id int64, attempt int, results string) {
			rep, err := w.ReportResults(ctx, tasker.ReportParams{TaskID: task.ID, Owner: owner,
				Results: []tasker.ExternalResult{{StepID: id, Attempt: attempt, Success: true, Results: json.RawMessage(results)}}})
			require.NoError(t, err)
			require.Equal(t, "recorded", rep.Results[0].Status)
		}
		claim, err := w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: task.ID, Owner: owner})
		require.NoError(t, err)
		require.Len(t, claim.Steps, 1)
		require.Equal(t, "score", claim.Steps[0].Name)
		report(claim.Steps[0].StepID, claim.Steps[0].Attempt, `{"risk": 0.2}`)

		claim, err = w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: task.ID, Owner: owner})
		require.NoError(t, err)
		require.Len(t, claim.Steps, 1, "review is skipped, not handed out")
		require.Equal(t, "charge", claim.Steps[0].Name)
		report(claim.Steps[0].StepID, claim.Steps[0].Attempt, `"charged"`)

		claim, err = w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: task.ID, Owner: owner})
		require.NoError(t, err)
		require.Len(t, claim.Steps, 1)
		require.Equal(t, "notify", claim.Steps[0].Name)
		require.Contains(t, claim.Steps[0].DependencyResults, "charge")
		report(claim.Steps[0].StepID, claim.Steps[0].Attempt, `{}`)
		fin, err := w.Finalize(ctx, task.ID, owner)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("complete"), fin.Status)
	})
}
