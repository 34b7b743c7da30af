package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/store/sqlcore"
	"github.com/tasker-systems/tasker/taskertype"
)

var _ sqlcore.RoundWriter = (*driver)(nil)

// roundColumns are a round's tasks, steps and edges as TaskCreateRound
// reads them: one array per column, an item's position the same in each.
type roundColumns struct {
	// tasks ($1-$23)
	namedTaskIDs                         []int64
	namespaces, names, versions          []string
	contexts, tags                       []json.RawMessage
	initiators, sources, reasons, actors []string
	priorities, maxParallel              []int
	nows                                 []time.Time
	runAts, queueRunAts                  []*time.Time
	retention, retentionFailed           []*int64
	concKeys, concPolicies               []*string
	concLimits, queuePriorities          []*int
	queueOperations, queueReasons        []*string
	keys                                 []*string // idempotency keys ($37)
	// steps ($24-$34)
	taskOrds, maxAttempts, timeouts []int
	namedStepIDs                    []int64
	stepNames, classes              []string
	configs, inputs                 []json.RawMessage
	bypassed, retryable, skippable  []bool
	// edges ($35-$36)
	fromOrds, toOrds []int
}

// WriteRound implements sqlcore.RoundWriter with TaskCreateRound.
func (d *driver) WriteRound(ctx context.Context, q sqlcore.Querier, r *sqlcore.Round) ([]*taskertype.Task, error) {
	c := newRoundColumns(r)
	rs, err := q.Query(ctx, d.q["TaskCreateRound"], c.args()...)
	if err != nil {
		return nil, fmt.Errorf("write tasks: %w", err)
	}
	defer rs.Close()
	tasks := make([]*taskertype.Task, len(r.Tasks))
	for rs.Next() {
		var ord int
		t, err := sqlcore.ScanTask(rs, &ord)
		if err != nil {
			return nil, fmt.Errorf("write tasks: %w", err)
		}
		if ord < 1 || ord > len(tasks) {
			return nil, fmt.Errorf("write tasks: position %d of %d tasks", ord, len(tasks))
		}
		tasks[ord-1] = t
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("write tasks: %w", err)
	}
	for i, t := range tasks {
		if t == nil {
			return nil, fmt.Errorf("write tasks: task %d of %d not written", i+1, len(tasks))
		}
	}
	return tasks, nil
}

func newRoundColumns(r *sqlcore.Round) *roundColumns {
	n := len(r.Tasks)
	c := &roundColumns{namedTaskIDs: make([]int64, 0, n), namespaces: make([]string, 0, n), names: make([]string, 0, n),
		versions: make([]string, 0, n), contexts: make([]json.RawMessage, 0, n), tags: make([]json.RawMessage, 0, n),
		initiators: make([]string, 0, n), sources: make([]string, 0, n), reasons: make([]string, 0, n),
		actors: make([]string, 0, n), priorities: make([]int, 0, n), maxParallel: make([]int, 0, n),
		nows: make([]time.Time, 0, n), runAts: make([]*time.Time, 0, n), queueRunAts: make([]*time.Time, 0, n),
		retention: make([]*int64, 0, n), retentionFailed: make([]*int64, 0, n), concKeys: make([]*string, 0, n),
		concPolicies: make([]*string, 0, n), concLimits: make([]*int, 0, n), queuePriorities: make([]*int, 0, n),
		queueOperations: make([]*string, 0, n), queueReasons: make([]*string, 0, n), keys: make([]*string, 0, n)}
	for i := range r.Tasks {
		t := &r.Tasks[i]
		p := t.P
		tags := p.Tags
		if tags == nil {
			tags = []string{}
		}
		tagJSON, _ := json.Marshal(tags) // []string always marshals
		var runAt *time.Time
		if p.RunAt != nil {
			at := sqlcore.UTC(*p.RunAt)
			runAt = &at
		}
		var key, policy *string
		var limit *int
		if cc := p.Concurrency; cc != nil {
			key, limit, policy = &cc.Key, &cc.Limit, &cc.Policy
		}
		var op, reason *string
		var qRunAt *time.Time
		var qPriority *int
		if qr := t.Queue; qr.Set {
			at := sqlcore.UTC(qr.RunAt)
			op, reason, qRunAt, qPriority = &qr.Operation, &qr.Reason, &at, &qr.Priority
		}
		c.namedTaskIDs = append(c.namedTaskIDs, t.NamedTaskID)
		c.namespaces = append(c.namespaces, p.Namespace)
		c.names = append(c.names, p.Name)
		c.versions = append(c.versions, p.Version)
		c.contexts = append(c.contexts, nonEmpty(p.Context))
		c.initiators = append(c.initiators, p.Initiator)
		c.sources = append(c.sources, p.SourceSystem)
		c.reasons = append(c.reasons, p.Reason)
		c.tags = append(c.tags, tagJSON)
		c.priorities = append(c.priorities, p.Priority)
		c.maxParallel = append(c.maxParallel, p.MaxParallelSteps)
		c.nows = append(c.nows, t.Now)
		c.runAts = append(c.runAts, runAt)
		c.retention = append(c.retention, seconds(p.Retention))
		c.retentionFailed = append(c.retentionFailed, seconds(p.RetentionFailed))
		c.concKeys = append(c.concKeys, key)
		c.concLimits = append(c.concLimits, limit)
		c.concPolicies = append(c.concPolicies, policy)
		c.queueOperations = append(c.queueOperations, op)
		c.queueRunAts = append(c.queueRunAts, qRunAt)
		c.queuePriorities = append(c.queuePriorities, qPriority)
		c.queueReasons = append(c.queueReasons, reason)
		c.actors = append(c.actors, p.Actor)
		var idem *string
		if p.IdempotencyKey != "" {
			idem = &p.IdempotencyKey
		}
		c.keys = append(c.keys, idem)
		for _, st := range p.Steps {
			inputs := st.Inputs
			if len(inputs) == 0 {
				inputs = json.RawMessage(`{}`)
			}
			c.taskOrds = append(c.taskOrds, i+1)
			c.namedStepIDs = append(c.namedStepIDs, t.NamedSteps[st.Name])
			c.stepNames = append(c.stepNames, st.Name)
			c.classes = append(c.classes, st.HandlerClass)
			c.configs = append(c.configs, nonEmpty(st.HandlerConfig))
			c.bypassed = append(c.bypassed, st.Bypassed)
			c.retryable = append(c.retryable, st.Retryable)
			c.maxAttempts = append(c.maxAttempts, st.MaxAttempts)
			c.timeouts = append(c.timeouts, st.TimeoutSeconds)
			c.skippable = append(c.skippable, st.Skippable)
			c.inputs = append(c.inputs, inputs)
		}
	}
	c.fromOrds = make([]int, len(r.Edges))
	c.toOrds = make([]int, len(r.Edges))
	for i, e := range r.Edges {
		c.fromOrds[i], c.toOrds[i] = e[0]+1, e[1]+1
	}
	return c
}

// args are TaskCreateRound's parameters, $1 to $37.
func (c *roundColumns) args() []any {
	return []any{c.namedTaskIDs, c.namespaces, c.names, c.versions, c.contexts, c.initiators, c.sources, c.reasons,
		c.tags, c.priorities, c.maxParallel, c.nows, c.runAts, c.retention, c.retentionFailed, c.concKeys, c.concLimits,
		c.concPolicies, c.queueOperations, c.queueRunAts, c.queuePriorities, c.queueReasons, c.actors,
		c.taskOrds, c.namedStepIDs, c.stepNames, c.classes, c.configs, c.bypassed, c.retryable, c.maxAttempts,
		c.timeouts, c.skippable, c.inputs, c.fromOrds, c.toOrds, c.keys}
}

// seconds is a retention as the tasks table keeps it: whole seconds, or
// nil (NULL: for ever).
func seconds(d *time.Duration) *int64 {
	if d == nil {
		return nil
	}
	s := int64(*d / time.Second)
	return &s
}
