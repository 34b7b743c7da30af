package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/condition"
	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// Conditional steps. A step template's `when` (CEL, see internal/condition)
// is evaluated when the step has been claimed, with the task context and
// its parents' results: false skips the step (in_progress -> skipped, the
// attempt given back, step.skipped published) and its children run as if
// it had completed; an expression that fails to evaluate fails the step
// permanently with the reason. The Go coordinator evaluates before calling
// the handler, the pull API before handing the step to a worker.

// stepCondition returns the compiled `when` of a task's step, nil when it
// has none (or the template is not loaded here: the step then runs).
func (e *Engine) stepCondition(task *taskertype.Task, step string) *condition.Condition {
	if tmpl := e.template(task); tmpl != nil {
		return tmpl.Condition(step)
	}
	return nil
}

// template returns task's template, nil when it is not loaded here.
func (e *Engine) template(task *taskertype.Task) *template.Template {
	tmpl, err := e.cfg.Templates.Lookup(task.Namespace, task.Name, task.Version)
	if err != nil {
		return nil
	}
	return tmpl
}

// conditionHolds evaluates a claimed step's `when` (cond, nil when it has
// none): run is true when there is none or it holds; err (permanent) when
// it cannot be evaluated.
func conditionHolds(cond *condition.Condition, task *taskertype.Task, c *store.ClaimedStep) (run bool, err error) {
	if cond == nil {
		return true, nil
	}
	ok, err := cond.Eval(task.Context, c.DependencyResults)
	if err != nil {
		return false, taskertype.Permanent(err)
	}
	return ok, nil
}

// skipReason is the reason recorded on a skipped step's transition.
func skipReason(cond *condition.Condition) string {
	if cond == nil {
		return "when is false"
	}
	return fmt.Sprintf("when %s is false", cond)
}

// skipOutcome is the outcome of a step whose condition was false.
func (e *Engine) skipOutcome(task *taskertype.Task, st *taskertype.Step, now time.Time) (store.StepOutcome, []taskertype.Event) {
	reason := skipReason(e.stepCondition(task, st.Name))
	ev := taskertype.Event{Kind: taskertype.EventStepSkipped, TaskID: task.ID, StepID: st.ID, StepName: st.Name,
		Time: now, Data: map[string]any{"reason": reason, "handler_class": st.HandlerClass}}
	return store.StepOutcome{StepID: st.ID, To: stepTarget(statemachine.StepEventSkip), Attempt: st.Attempts,
		Event: string(statemachine.StepEventSkip), GiveBackAttempt: true, Reason: reason}, []taskertype.Event{ev}
}

// skipUnmet records, for an external worker's claim, the steps whose `when`
// is false (skipped) or cannot be evaluated (failed), and returns the steps
// left for the worker to run.
func (e *Engine) skipUnmet(ctx context.Context, owner string, task *taskertype.Task,
	claimed []*store.ClaimedStep) ([]*store.ClaimedStep, error) {
	var settled []attemptResult
	run := claimed[:0:0]
	for _, c := range claimed {
		ok, err := conditionHolds(e.stepCondition(task, c.Step.Name), task, c)
		if err == nil && ok {
			run = append(run, c)
			continue
		}
		settled = append(settled, attemptResult{claimed: c, err: err, skipped: err == nil})
	}
	if len(settled) == 0 {
		return claimed, nil
	}
	if _, _, err := e.recordAs(context.WithoutCancel(ctx), owner, task, settled, false, false); err != nil {
		return nil, err
	}
	return run, nil
}
