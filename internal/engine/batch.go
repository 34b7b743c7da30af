package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// BatchChunkDefault is how many tasks InitializeTasks writes with one store
// call (one transaction): large enough that a round trip is shared by many
// tasks, small enough that one transaction's rows and locks stay modest.
const BatchChunkDefault = 1000

// coalesceBatchMax is the largest InitializeTasks call whose tasks are
// written in the rounds of concurrent InitializeTask calls (creates.go)
// rather than in a store call of their own: alone, a small batch pays a
// commit (a WAL flush, on a durable database) for a few tasks, and
// producers that each create a few tasks at a time wait on each other's
// flushes. Calls of 100 from 16 producers while the runner worked: 6.0-6.2k
// tasks/s coalesced against 4.9-5.0k alone.
const coalesceBatchMax = 127

// TaskResult is taskertype.TaskResult.
type TaskResult = taskertype.TaskResult

// InitializeTasks validates every request like InitializeTask and creates
// the valid ones, BatchChunkDefault per transaction. It returns one result
// per request, in input order: a request that fails validation gets its
// own error and does not stop the others. Idempotency keys are honoured per
// request; a key repeated within the batch resolves to its first request's
// task. Events are published for every task created, as InitializeTask
// does. A call of at most coalesceBatchMax (127) valid requests is written
// in the rounds of concurrent InitializeTask and small InitializeTasks
// calls (one store call, one commit, for the tasks of many callers); a
// request the store fails there gets its own error, and the call fails as
// a whole only when every request failed (nothing was written).
//
// Store failures: writing stops at the first chunk the store fails; that
// chunk's and later chunks' valid requests get a *taskertype.StoreFailureError
// (matching taskertype.ErrNotAttempted) and nothing of them is written.
// When the very first chunk fails, nothing was written and the error is
// returned alone, with nil results: the batch may be sent again as a whole.
func (e *Engine) InitializeTasks(ctx context.Context, reqs []*TaskRequest) ([]TaskResult, error) {
	return e.initializeTasks(ctx, reqs, BatchChunkDefault)
}

func (e *Engine) initializeTasks(ctx context.Context, reqs []*TaskRequest, chunk int) ([]TaskResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	results := make([]TaskResult, len(reqs))
	ps := make([]*store.TaskCreateParams, 0, len(reqs))
	idx := make([]int, 0, len(reqs)) // idx[k] is the request index of ps[k]
	for i, req := range reqs {
		if req == nil {
			results[i].Err = &taskertype.BatchItemError{Index: i, Err: &taskertype.RequestError{Msg: "request is null"}}
			continue
		}
		p, err := e.taskCreateParams(req)
		if err != nil {
			results[i].Err = &taskertype.BatchItemError{Index: i, Err: err}
			continue
		}
		ps, idx = append(ps, p), append(idx, i)
	}
	if len(ps) > 0 && len(ps) <= min(chunk, coalesceBatchMax) {
		return e.initializeCoalesced(ctx, results, ps, idx)
	}
	for start := 0; start < len(ps); start += chunk {
		end := min(start+chunk, len(ps))
		res, err := e.store.TaskCreateMany(ctx, ps[start:end])
		if err == nil && len(res) != end-start {
			err = fmt.Errorf("store returned %d results for %d tasks", len(res), end-start)
		}
		if err != nil {
			err = fmt.Errorf("create tasks %d to %d of %d: %w", idx[start], idx[end-1], len(reqs), err)
			if start == 0 {
				return nil, err
			}
			for k := start; k < len(ps); k++ {
				results[idx[k]].Err = &taskertype.BatchItemError{Index: idx[k], Err: &taskertype.StoreFailureError{Err: err}}
			}
			break
		}
		for k, r := range res {
			p := ps[start+k]
			results[idx[start+k]] = TaskResult{Task: r.Task, Created: r.Created}
			if r.Created {
				e.announceCreated(ctx, p, r.Task.ID)
			}
		}
	}
	return results, nil
}

// initializeCoalesced writes the tasks of a small batch (ps, the valid
// requests idx[k] of results) in the coalesced rounds of creates.go. A
// request the store fails gets its own error (a round that fails is written
// again one request at a time); when every request failed, nothing was
// written and the first error is returned alone, as when a batch's only
// chunk fails.
func (e *Engine) initializeCoalesced(ctx context.Context, results []TaskResult, ps []*store.TaskCreateParams,
	idx []int) ([]TaskResult, error) {
	res, errs, err := e.creates.doMany(ctx, ps)
	if err != nil {
		return nil, fmt.Errorf("create %d tasks: %w", len(ps), err)
	}
	failed := 0
	for k, r := range res {
		if errs[k] != nil {
			failed++
			err := errs[k]
			if !errors.As(err, new(*taskertype.RequestError)) {
				err = &taskertype.StoreFailureError{Err: err}
			}
			results[idx[k]].Err = &taskertype.BatchItemError{Index: idx[k], Err: err}
			continue
		}
		results[idx[k]] = TaskResult{Task: r.Task, Created: r.Created}
		if r.Created {
			e.announceCreated(ctx, ps[k], r.Task.ID)
		}
	}
	if failed == len(ps) {
		return nil, fmt.Errorf("create %d tasks: %w", len(ps), errs[0])
	}
	return results, nil
}

// announceCreated publishes task.initialized and tells the enqueue handler
// about a task just committed (the store's TaskCreate and TaskCreateMany
// announce their records to the runners of every process themselves).
func (e *Engine) announceCreated(ctx context.Context, p *store.TaskCreateParams, taskID int64) {
	e.bus.Publish(taskertype.Event{Kind: taskertype.EventTaskInitialized, TaskID: taskID, Time: p.Now,
		Data: map[string]any{"namespace": p.Namespace, "name": p.Name, "version": p.Version, "steps": len(p.Steps)}})
	e.handleEnqueue(ctx, EnqueueRequest{TaskID: taskID, Operation: OperationEnqueue, Priority: p.Priority,
		DelaySeconds: max(p.Queue.RunAt.Sub(p.Now).Seconds(), 0), Reason: "task initialized", Time: p.Now})
}
