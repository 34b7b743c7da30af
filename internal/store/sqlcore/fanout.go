package sqlcore

import (
	"context"
	"fmt"
	"slices"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// StepFanOut implements store.FanOutStore: the placeholder's release (the
// guard: still in progress under the owner's lease for the attempt), then
// the children, their transitions and the edges, in one transaction. The
// children are written like a new task's steps (multi-row INSERTs, or COPY
// on PostgreSQL for many), under the placeholder's named step.
func (s *Core) StepFanOut(ctx context.Context, p *store.StepFanOutParams) (*store.StepFanOutResult, error) {
	res := &store.StepFanOutResult{}
	err := s.InTx(ctx, func(tx Tx) error {
		res.Applied, res.ChildIDs = false, nil
		now := UTC(p.Now)
		var namedStepID int64
		var seq int
		err := tx.QueryRow(ctx, s.Q("StepFanOutRelease"), p.StepID, p.TaskID, p.Owner, p.Attempt, s.T(now)).
			Scan(&namedStepID, &seq)
		if IsNoRows(err) {
			return nil // no longer held: nothing to expand
		}
		if err != nil {
			return fmt.Errorf("release placeholder: %w", err)
		}
		res.Applied = true
		err = s.d.AppendStepTransitions(ctx, tx, p.TaskID, []TransitionRow{{StepID: p.StepID,
			From: string(taskertype.StepStateInProgress), To: string(taskertype.StepStatePending), Event: p.Event,
			Reason: p.Reason, Actor: p.Actor, Seq: seq}}, now)
		if err != nil {
			return fmt.Errorf("placeholder transition: %w", err)
		}
		if len(p.Children) == 0 {
			return nil
		}
		parents, err := s.stepParentIDs(ctx, tx, p.StepID)
		if err != nil {
			return err
		}
		nt := &newTask{p: &store.TaskCreateParams{Steps: p.Children, Actor: p.Actor}, now: now, id: p.TaskID,
			named:   &namedTask{steps: make(map[string]int64, len(p.Children))},
			stepIDs: make(map[string]int64, len(p.Children))}
		refs := make([]stepRef, len(p.Children))
		for i := range p.Children {
			nt.named.steps[p.Children[i].Name] = namedStepID
			refs[i] = stepRef{t: nt, spec: &p.Children[i]}
		}
		if err := s.insertSteps(ctx, tx, refs); err != nil {
			return err
		}
		res.ChildIDs = make([]int64, len(p.Children))
		for i, c := range p.Children {
			id, ok := nt.stepIDs[c.Name]
			if !ok {
				return fmt.Errorf("insert fan-out children: no id for %q", c.Name)
			}
			res.ChildIDs[i] = id
		}
		if err := s.fanOutEdges(ctx, tx, p, parents, res.ChildIDs); err != nil {
			return err
		}
		err = s.bulkInsert(ctx, tx, "tasker_workflow_step_transitions", []string{"step_id", "task_id", "from_state",
			"to_state", "event", "reason", "actor", "sort_key", "created_at"}, len(p.Children), func(i int) []any {
			return []any{res.ChildIDs[i], p.TaskID, nil, string(taskertype.StepStatePending), "initialize", p.Reason,
				p.Actor, 1, s.T(now)}
		})
		if err != nil {
			return fmt.Errorf("insert fan-out child transitions: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fan out step %d of task %d: %w", p.StepID, p.TaskID, err)
	}
	return res, nil
}

// stepParentIDs returns the ids of the parents of step.
func (s *Core) stepParentIDs(ctx context.Context, tx Tx, step int64) ([]int64, error) {
	rs, err := tx.Query(ctx, s.Q("StepFanOutParents"), step)
	if err != nil {
		return nil, fmt.Errorf("placeholder parents: %w", err)
	}
	defer rs.Close()
	var out []int64
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			return nil, fmt.Errorf("placeholder parents: %w", err)
		}
		out = append(out, id)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("placeholder parents: %w", err)
	}
	return out, nil
}

// fanOutEdges writes the edges of an expansion: every parent of the
// placeholder to every child, and every child to the placeholder. Like a
// new task's, each step's edges go in newest parent first (see
// insertEdges): the placeholder's readiness check then meets the children
// still running first.
func (s *Core) fanOutEdges(ctx context.Context, tx Tx, p *store.StepFanOutParams, parents, children []int64) error {
	type edge struct{ from, to int64 }
	edges := make([]edge, 0, len(children)*(len(parents)+1))
	sorted := slices.Clone(parents)
	slices.Sort(sorted)
	slices.Reverse(sorted)
	for _, c := range children {
		for _, par := range sorted {
			edges = append(edges, edge{from: par, to: c})
		}
	}
	newest := slices.Clone(children)
	slices.Sort(newest)
	slices.Reverse(newest)
	for _, c := range newest {
		edges = append(edges, edge{from: c, to: p.StepID})
	}
	err := s.bulkInsert(ctx, tx, "tasker_workflow_step_edges", []string{"task_id", "from_step_id", "to_step_id"}, len(edges),
		func(i int) []any { return []any{p.TaskID, edges[i].from, edges[i].to} })
	if err != nil {
		return fmt.Errorf("insert fan-out edges: %w", err)
	}
	return nil
}
