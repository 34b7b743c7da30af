package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/tracing/tracectx"
	"github.com/tasker-systems/tasker/taskertype"
)

// The external-worker (pull) API. A worker that cannot be called from Go (the
// Ruby gem) drives a task itself: it claims steps, runs its handlers, reports
// their results and asks the finalizer what happens next. Each call is
// stateless and safe to repeat; every decision (readiness, state transitions,
// backoff, finalization) is made here, with the same functions the Go
// coordinator uses. Leases are held under the worker's owner name, so several
// workers (processes) can share one engine.

// The pull protocol's types live in taskertype so that users can name them.
type (
	// ExternalTask is taskertype.ExternalTask.
	ExternalTask = taskertype.ExternalTask
	// ExternalStep is taskertype.ExternalStep.
	ExternalStep = taskertype.ExternalStep
	// ClaimResult is taskertype.ClaimResult.
	ClaimResult = taskertype.ClaimResult
	// ExternalError is taskertype.ExternalError.
	ExternalError = taskertype.ExternalError
	// ExternalResult is taskertype.ExternalResult.
	ExternalResult = taskertype.ExternalResult
	// ReportedResult is taskertype.ReportedResult.
	ReportedResult = taskertype.ReportedResult
	// ReportResult is taskertype.ReportResult.
	ReportResult = taskertype.ReportResult
	// ExtendResult is taskertype.ExtendResult.
	ExtendResult = taskertype.ExtendResult
)

// Report statuses of ReportedResult (see taskertype).
const (
	ReportRecorded  = taskertype.ReportRecorded
	ReportDiscarded = taskertype.ReportDiscarded
)

// StepLease returns how long a claim lasts without ExtendLeases.
func (e *Engine) StepLease() time.Duration { return e.cfg.StepLease }

func externalTask(t *taskertype.Task) ExternalTask {
	return ExternalTask{TaskID: t.ID, Namespace: t.Namespace, Name: t.Name, Version: t.Version, Status: t.State,
		Context: t.Context, Priority: t.Priority, MaxParallelSteps: t.MaxParallelSteps, Tags: t.Tags,
		Initiator: t.Initiator, SourceSystem: t.SourceSystem, Reason: t.Reason}
}

// ClaimSteps starts the task when it is pending (or waiting for a retry) and
// claims up to limit of its ready steps for owner, with a lease of
// Config.StepLease; limit <= 0 means the task's max_parallel_steps. It
// counts an attempt for each step and publishes step.started.
func (e *Engine) ClaimSteps(ctx context.Context, taskID int64, owner string, limit int) (*ClaimResult, error) {
	if owner == "" {
		return nil, &taskertype.RequestError{Field: "owner", Msg: "owner is required"}
	}
	now := e.now()
	// The start (when the task is pending or waiting for a retry), the read
	// of the task and the claim share one transaction, batched with other
	// claims on PostgreSQL. A task already in progress is only claimed from;
	// one in any other state is left alone. A task with a concurrency key
	// at its limit is parked or cancelled by its policy (concurrency.go).
	adm, tr, task, claimed, err := e.startAndClaim(ctx, startParams(taskID, owner, "external worker started", now),
		e.leased(&store.StepClaimParams{TaskID: taskID, Owner: owner, Limit: max(limit, 0)}))
	if err != nil || adm.stop {
		return e.notAdmitted(ctx, taskID, adm, err)
	}
	if tr.Changed {
		e.bus.Publish(taskertype.Event{Kind: taskertype.EventTaskStarted, TaskID: taskID, Time: now})
	}
	res := &ClaimResult{Steps: []ExternalStep{}}
	res.Task = externalTask(task)
	if task.State != taskertype.TaskStateInProgress {
		return res, nil
	}
	if e.overdue(task, e.now()) { // the steps just claimed are cancelled with it
		hr, err := e.expire(ctx, task, &HandleResult{TaskID: taskID})
		if err != nil {
			return nil, fmt.Errorf("claim steps: %w", err)
		}
		task.State = hr.Status
		res.Task = externalTask(task)
		return res, nil
	}
	res.Runnable = true
	if claimed, err = e.claimPastFanOuts(ctx, owner, task, claimed, limit); err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	claimed, err = e.skipUnmet(ctx, owner, task, claimed)
	if err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	if claimed, err = e.slotClaimed(ctx, owner, task, claimed); err != nil { // a slot of a limited class first
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	if claimed, err = e.throttleClaimed(ctx, owner, task, claimed); err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	events := make([]taskertype.Event, 0, len(claimed))
	for _, c := range claimed {
		st := c.Step
		deps := c.DependencyResults
		if deps == nil {
			deps = map[string]json.RawMessage{}
		}
		es := ExternalStep{StepID: st.ID, Name: st.Name, HandlerClass: st.HandlerClass,
			HandlerConfig: orEmptyObject(st.HandlerConfig), Inputs: orEmptyObject(st.Inputs), Attempt: st.Attempts,
			MaxAttempts: st.MaxAttempts, Retryable: st.Retryable, TimeoutSeconds: st.TimeoutSeconds,
			DependencyResults: deps, Parents: st.Parents,
			TraceParent: tracectx.StepTraceParent(task.Tags, task.ID, st.ID, st.Attempts)}
		if st.LeaseExpiresAt != nil {
			es.LeaseExpiresAt = *st.LeaseExpiresAt
		}
		if es.Parents == nil {
			es.Parents = []string{}
		}
		res.Steps = append(res.Steps, es)
		events = append(events, taskertype.Event{Kind: taskertype.EventStepStarted, TaskID: taskID, StepID: st.ID,
			StepName: st.Name, Time: e.claimedAt(c), Data: map[string]any{"attempt": st.Attempts, "handler_class": st.HandlerClass}})
	}
	e.bus.Publish(events...)
	return res, nil
}

func orEmptyObject(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage(`{}`)
	}
	return raw
}

// externalFailure turns a reported error into the error the coordinator's
// outcome function classifies.
func externalFailure(x *ExternalError) (error, bool) {
	if x == nil {
		x = &ExternalError{Message: "step failed without an error"}
	}
	msg := x.Message
	if msg == "" {
		msg = "step failed"
	}
	if x.Class != "" {
		msg = x.Class + ": " + msg
	}
	err := errors.New(msg)
	switch {
	case x.Permanent || (x.Retryable != nil && !*x.Retryable):
		return taskertype.Permanent(err), x.TimedOut
	case x.RetryAfterSeconds > 0:
		return taskertype.Retryable(err, time.Duration(x.RetryAfterSeconds*float64(time.Second))), x.TimedOut
	}
	return err, x.TimedOut
}

// ReportResults records the results of attempts owner claimed, in one
// transaction, deciding each outcome (complete, waiting for retry with its
// backoff, or error) exactly as the Go coordinator does. A result for an
// attempt owner no longer holds is discarded and reported as such, so a
// repeated report changes nothing.
//
// With finalize (the worker has nothing left in flight) the TaskFinalizer
// also decides, in the same transaction, and its decision is returned in
// Final: one call instead of ReportResults and Finalize.
func (e *Engine) ReportResults(ctx context.Context, taskID int64, owner string, results []ExternalResult,
	finalize bool) (*ReportResult, error) {
	if owner == "" {
		return nil, &taskertype.RequestError{Field: "owner", Msg: "owner is required"}
	}
	ids := make([]int64, len(results))
	for i, r := range results {
		ids[i] = r.StepID
	}
	// The task and the reported steps (only those: a report's cost follows
	// its size, not the task's) are read at once, on two connections: a
	// worker waits for its report, so the second read would add a round
	// trip to every report.
	var steps []*taskertype.Step
	stepsErr := make(chan error, 1)
	if len(ids) > 0 {
		go func() {
			var err error
			steps, err = e.store.StepsByID(ctx, taskID, ids)
			stepsErr <- err
		}()
	} else {
		stepsErr <- nil
	}
	task, err := e.store.TaskGet(ctx, taskID)
	if serr := <-stepsErr; err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("report results: %w", err)
	}
	if !task.State.Terminal() && e.overdue(task, e.now()) {
		return e.reportPastDeadline(ctx, task, results, finalize)
	}
	out := &ReportResult{Results: make([]ReportedResult, len(results)), ClaimMore: true}
	if finalize && task.State != taskertype.TaskStateInProgress {
		// Only a running task is finalized (see Finalize).
		out.Final = untouched(&HandleResult{TaskID: taskID}, task.State)
		finalize = false
	}
	if len(results) == 0 && !finalize {
		return out, nil
	}
	byID := make(map[int64]*taskertype.Step, len(steps))
	for _, st := range steps {
		byID[st.ID] = st
	}
	now := e.now()
	var (
		outcomes []store.StepOutcome
		events   [][]taskertype.Event
		index    []int // results index of each outcome
	)
	seen := map[int64]bool{}
	for i, r := range results {
		out.Results[i] = ReportedResult{StepID: r.StepID, Status: ReportDiscarded}
		st := byID[r.StepID]
		switch {
		case st == nil:
			out.Results[i].Reason = fmt.Sprintf("step %d is not a step of task %d", r.StepID, taskID)
			continue
		case seen[r.StepID]:
			out.Results[i].Reason = "duplicate result for this step in the same report"
			continue
		case (st.State != taskertype.StepStateInProgress || st.LeaseOwner != owner) &&
			!(r.Success && lateSuccessTaken(st, r.Attempt)):
			out.Results[i].Reason = fmt.Sprintf("step is %s and not held by %s", st.State, owner)
			continue
		case r.Attempt != st.Attempts:
			out.Results[i].Reason = fmt.Sprintf("attempt %d is stale: the step is on attempt %d", r.Attempt, st.Attempts)
			continue
		}
		seen[r.StepID] = true
		ar := attemptResult{claimed: &store.ClaimedStep{Step: st}, duration: time.Duration(r.DurationMS) * time.Millisecond}
		if r.Release {
			ar.err = errors.New("released")
			o, ev := e.outcome(task, st, ar, now, true)
			o.Reason = "released by " + owner + " shutting down"
			outcomes, events, index = append(outcomes, o), append(events, ev), append(index, i)
			continue
		}
		if r.Success {
			raw := r.Results
			if len(raw) == 0 || string(raw) == "null" {
				raw = json.RawMessage(`{}`)
			}
			if !json.Valid(raw) {
				ar.err = taskertype.Permanent(errors.New("handler returned invalid JSON results"))
			} else if err := storableResults(raw); err != nil {
				ar.err = err
			}
			ar.results = raw
		} else {
			ar.err, ar.timedOut = externalFailure(r.Error)
			e.blockOnRetryAfter(ctx, task, nil, st.Name, ar.err) // before the failure is recorded
		}
		o, ev := e.outcome(task, st, ar, now, false)
		if !r.Success && r.Error != nil {
			o.Error = withErrorDetails(o.Error, r.Error)
		}
		outcomes = append(outcomes, o)
		events = append(events, ev)
		index = append(index, i)
	}
	if len(outcomes) == 0 && !finalize {
		return out, nil
	}
	params := &store.StepRecordParams{TaskID: taskID, Owner: owner, Now: now, Outcomes: outcomes}
	var applied []bool
	var v verdict
	var tr *store.TransitionResult
	if finalize {
		applied, v, tr, err = e.stepRecordFinalize(ctx, params, task)
	} else {
		applied, err = e.stepRecord(ctx, params)
	}
	if err != nil {
		return nil, fmt.Errorf("report results: %w", err)
	}
	var publish []taskertype.Event
	var unlocks *unlockTracker
	unlocksLoaded := false
	for j, ok := range applied {
		rr := &out.Results[index[j]]
		if !ok {
			rr.Reason = "step no longer held by " + owner
			continue
		}
		rr.Status, rr.State, rr.Reason, rr.NextRetryAt = ReportRecorded, outcomes[j].To, outcomes[j].Reason, outcomes[j].NextRetryAt
		switch outcomes[j].To {
		case taskertype.StepStateError:
			out.ClaimMore = false
		case taskertype.StepStateComplete, taskertype.StepStateResolvedManually:
			if !unlocksLoaded {
				unlocks, unlocksLoaded = e.newUnlockTracker(task), true
			}
			if unlocks.hasChildren(byID[outcomes[j].StepID].Name) {
				out.Unlocks = true
			}
		}
		publish = append(publish, events[j]...)
	}
	e.bus.Publish(publish...)
	if finalize {
		out.Final = &HandleResult{TaskID: taskID, Status: task.State}
		e.settle(context.WithoutCancel(ctx), task, out.Final, v, tr)
	}
	return out, nil
}

// withErrorDetails stores the worker's own message (without the prefixes
// the error wrappers add), exception class and backtrace in the error
// document.
func withErrorDetails(doc json.RawMessage, x *ExternalError) json.RawMessage {
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		return doc
	}
	if x.Message != "" {
		m["message"] = storableText(x.Message)
	}
	if x.Class != "" {
		m["class"] = storableText(x.Class)
	}
	if len(x.Backtrace) > 0 {
		bt := make([]string, len(x.Backtrace))
		for i, l := range x.Backtrace {
			bt[i] = storableText(l)
		}
		m["backtrace"] = bt
	}
	out, err := json.Marshal(m)
	if err != nil {
		return doc
	}
	return out
}

// reportPastDeadline answers a report for a task past its deadline that no
// runner has expired yet: the task expires now (its running attempts are
// cancelled), so the late results are discarded exactly as after the
// expiry, whichever comes first; the worker is told to claim nothing more.
func (e *Engine) reportPastDeadline(ctx context.Context, task *taskertype.Task, results []ExternalResult,
	finalize bool) (*ReportResult, error) {
	hr, err := e.expire(ctx, task, &HandleResult{TaskID: task.ID})
	if err != nil {
		return nil, fmt.Errorf("report results: %w", err)
	}
	at, timeout, _ := e.deadline(task)
	out := &ReportResult{Results: make([]ReportedResult, len(results))}
	if finalize {
		out.Final = hr
	}
	for i, r := range results {
		out.Results[i] = ReportedResult{StepID: r.StepID, Status: ReportDiscarded,
			Reason: fmt.Sprintf("the task's deadline passed (timeout_seconds %d, at %s): it expired", timeout,
				at.UTC().Format(time.RFC3339))}
	}
	return out, nil
}

// ExtendLeases pushes the leases of steps owner still holds to
// Config.StepLease after the database's clock (the clock that granted them).
// Steps no longer held are left alone; Extended counts the others.
func (e *Engine) ExtendLeases(ctx context.Context, owner string, stepIDs []int64) (*ExtendResult, error) {
	if owner == "" {
		return nil, &taskertype.RequestError{Field: "owner", Msg: "owner is required"}
	}
	n, until, err := e.store.StepLeaseExtend(ctx, owner, stepIDs, e.cfg.StepLease)
	if err != nil {
		return nil, fmt.Errorf("extend leases: %w", err)
	}
	return &ExtendResult{Extended: n, LeaseExpiresAt: until}, nil
}

// Finalize runs the TaskFinalizer once for a task an external worker drove,
// with owner as the actor, and returns the same HandleResult the Go
// coordinator returns. Outcome ActionContinue means steps are ready: claim
// again. Call it when the worker has nothing in flight and nothing more to
// claim.
func (e *Engine) Finalize(ctx context.Context, taskID int64, owner string) (*HandleResult, error) {
	if owner == "" {
		return nil, &taskertype.RequestError{Field: "owner", Msg: "owner is required"}
	}
	task, err := e.store.TaskGet(ctx, taskID)
	if err != nil {
		return nil, fmt.Errorf("finalize: %w", err)
	}
	res := &HandleResult{TaskID: taskID, Status: task.State}
	if task.State != taskertype.TaskStateInProgress {
		// Only a running task is finalized; the others are where the last
		// finalizer (or an operator) left them.
		return untouched(res, task.State), nil
	}
	if e.overdue(task, e.now()) {
		return e.expire(ctx, task, res)
	}
	if err := e.decide(ctx, task, res, owner); err != nil {
		return res, fmt.Errorf("finalize: %w", err)
	}
	return res, nil
}

// RescueExpired returns steps whose lease expired (their worker died) to the
// pool, as the runner does every Config.RescueInterval, and says how many
// it rescued. Engines without a Go runner (external workers) call it
// periodically. It also expires the tasks past their deadline
// (expireOverdue); those are not counted.
func (e *Engine) RescueExpired(ctx context.Context) (int, error) {
	now := e.now()
	// Leases are granted and extended by the database's clock; they are
	// judged expired by it too (the zero time), so that a runner whose clock
	// is ahead does not rescue live attempts.
	steps, err := e.store.StepLeaseExpired(ctx, time.Time{}, 100)
	if err != nil {
		return 0, fmt.Errorf("find expired step leases: %w", err)
	}
	n := 0
	var errs []error
	// A rescue, once begun, runs to its commit and publishes its event even
	// when ctx ends meanwhile (a runner shutting down): cancelled halfway, its
	// commit could take effect unseen, and the task.reenqueue that event-based
	// workers wait for would never be published. The steps not begun wait
	// for the next sweep, by any runner.
	dbctx := context.WithoutCancel(ctx)
	for _, st := range steps {
		if ctx.Err() != nil {
			break
		}
		if err := e.rescueStep(dbctx, st, now); err != nil {
			// One step's failure must not keep the others stranded.
			errs = append(errs, fmt.Errorf("rescue step %s of task %d: %w", st.Name, st.TaskID, err))
			continue
		}
		n++
	}
	if ctx.Err() == nil {
		if expired, err := e.expireOverdue(dbctx); err != nil {
			errs = append(errs, err)
		} else if expired > 0 {
			e.log.Info("expired tasks past their deadline", "tasks", expired)
		}
	}
	return n, errors.Join(errs...)
}

// Yield hands a task an external worker was driving back to the queue, due
// now, as the Go coordinator does when it shuts down: the task returns to
// pending, its queue record is rewritten (lease cleared) and task.reenqueue is
// published. The worker first releases its unfinished attempts
// (ExternalResult.Release). A task that is not in progress or pending is
// left alone (outcome ActionNone).
func (e *Engine) Yield(ctx context.Context, taskID int64, owner, reason string) (*HandleResult, error) {
	if owner == "" {
		return nil, &taskertype.RequestError{Field: "owner", Msg: "owner is required"}
	}
	task, err := e.store.TaskGet(ctx, taskID)
	if err != nil {
		return nil, fmt.Errorf("yield: %w", err)
	}
	res := &HandleResult{TaskID: taskID, Status: task.State}
	if task.State != taskertype.TaskStateInProgress && task.State != taskertype.TaskStatePending {
		return untouched(res, task.State), nil
	}
	if reason == "" {
		reason = "external worker shutting down"
	}
	return e.yield(task, res, reason+" ("+owner+")")
}

// QueueClaim leases up to limit enqueue records for owner until now+lease,
// among those due for at least grace (run_at <= now-grace): how an external
// job system finds enqueues whose events were never turned into jobs.
func (e *Engine) QueueClaim(ctx context.Context, owner string, limit int, lease, grace time.Duration) ([]*store.QueueEntry, error) {
	now := e.now()
	return e.store.QueueClaim(ctx, &store.QueueClaimParams{Owner: owner, Limit: limit, Now: now,
		LeaseUntil: now.Add(lease), DueBefore: now.Add(-grace)})
}
