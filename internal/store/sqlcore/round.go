package sqlcore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// RoundMaxTasks bounds the calls a RoundWriter writes: a call of fewer
// tasks is one statement (after a lookup of its idempotency keys, if it
// has any, all new), a larger one a transaction whose rows go by COPY. Measured on a durable cluster: calls
// of 1,000 tasks made 13.6k tasks/s by COPY against 11.0k by the statement;
// calls of 100 while the runner works made 5.8-6.4k tasks/s by the
// statement against 5.7-5.8k by COPY.
const RoundMaxTasks = 128

// RoundWriter is a Driver that writes a round of new tasks in one
// statement (PostgreSQL): their rows with their enqueue records, their
// transitions, steps, edges and step transitions, in autocommit, and
// returns the tasks as written. A round of single creates was a
// transaction of seven round trips (BEGIN, four INSERTs, COMMIT and the
// read-back); one statement saves six round trips and the fixed cost of
// six statements. A round with idempotency keys first looks its keys up
// (one more statement); when one names a task, or another process writes
// one of them meanwhile (the statement fails on the unique index, writing
// nothing), the round takes the transaction path, which applies the keys'
// windows.
type RoundWriter interface {
	WriteRound(ctx context.Context, q Querier, r *Round) ([]*taskertype.Task, error)
}

// Round is the new tasks a RoundWriter writes.
type Round struct {
	// Tasks are in the caller's order; the result is in the same order.
	Tasks []NewTask
	// Edges are (parent, child) positions in the round's steps (every
	// task's P.Steps, one task after the other), each child's edges
	// newest parent first (see insertEdges).
	Edges [][2]int
}

// NewTask is one task of a Round.
type NewTask struct {
	P   *store.TaskCreateParams
	Now time.Time // UTC, to the microsecond
	// NamedTaskID and NamedSteps (by step name) are the task's template's
	// committed named task and steps.
	NamedTaskID int64
	NamedSteps  map[string]int64
	Queue       QueueRecord
}

// errRoundKeyed reports a round whose idempotency keys name existing
// tasks: it is written by the transaction path.
var errRoundKeyed = errors.New("a key of the round names a task")

// writeRound writes the tasks of ps with w, after looking their keys up
// (errRoundKeyed when one names a task), resolving their templates' named
// tasks and steps (committed by commitNamed, read from the cache after a
// template's first rounds) and checking their steps' parents. A key
// repeated in ps is written once: the later params get the first one's
// task, not created.
func (s *Core) writeRound(ctx context.Context, w RoundWriter, ps []*store.TaskCreateParams) ([]*store.TaskCreateResult, error) {
	for _, p := range ps {
		if err := checkQueueOp(p); err != nil {
			return nil, err
		}
	}
	if slices.ContainsFunc(ps, hasKey) {
		existing, err := s.keyedTasks(ctx, s.db, ps)
		if err != nil {
			return nil, err
		}
		if len(existing) > 0 {
			return nil, errRoundKeyed
		}
	}
	first := map[string]int{}  // key -> position in ts of its task
	at := make([]int, len(ps)) // position in ts of each params' task
	var ts []*newTask
	for i, p := range ps {
		if key := p.IdempotencyKey; key != "" {
			if j, ok := first[key]; ok {
				at[i] = j
				continue
			}
			first[key] = len(ts)
		}
		at[i] = len(ts)
		ts = append(ts, &newTask{p: p, now: UTC(p.Now)})
	}
	if err := s.namedTasks(ctx, s.db, ts); err != nil {
		return nil, err
	}
	r := &Round{Tasks: make([]NewTask, len(ts))}
	base := 0
	for i, t := range ts {
		r.Tasks[i] = NewTask{P: t.p, Now: t.now, NamedTaskID: t.named.id, NamedSteps: t.named.steps,
			Queue: NewQueueRecord(t.p, t.now)}
		pos := make(map[string]int, len(t.p.Steps))
		for j, st := range t.p.Steps {
			pos[st.Name] = base + j
		}
		for j, st := range t.p.Steps {
			for _, parent := range st.Parents {
				from, ok := pos[parent]
				if !ok {
					return nil, &taskertype.RequestError{Step: st.Name, Msg: fmt.Sprintf("depends on unknown step %q", parent)}
				}
				r.Edges = append(r.Edges, [2]int{from, base + j})
			}
		}
		base += len(t.p.Steps)
	}
	// Steps get ids in position order, so this is insertEdges' order.
	slices.SortFunc(r.Edges, func(a, b [2]int) int { return cmp.Or(cmp.Compare(a[1], b[1]), cmp.Compare(b[0], a[0])) })
	tasks, err := w.WriteRound(ctx, s.db, r)
	if err != nil {
		return nil, err
	}
	if len(tasks) != len(ts) {
		return nil, fmt.Errorf("write tasks: %d tasks written for %d", len(tasks), len(ts))
	}
	out := make([]*store.TaskCreateResult, len(ps))
	for i, p := range ps {
		task := *tasks[at[i]] // each result its own copy: two params may name one task
		out[i] = &store.TaskCreateResult{Task: &task, Created: ts[at[i]].p == p}
		if !p.SkipStepsResult {
			if out[i].Steps, err = s.StepList(ctx, task.ID); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
