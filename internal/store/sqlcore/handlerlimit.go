package sqlcore

import (
	"context"
	"fmt"

	"github.com/tasker-systems/tasker/internal/store"
)

// HandlerLimitQueries are the named statements of handler-class limits
// (store.HandlerLimiter); every database defines them. Migration 0018 keeps
// the slots in tasker_workflow_steps.slot_attempt: PostgreSQL admits in a
// function that takes a per-class advisory lock before it counts, SQLite in
// one UPDATE under its single writer.
var HandlerLimitQueries = []string{"HandlerAdmit", "HandlerRunning"}

// HandlerAdmit implements store.HandlerLimiter.
func (s *Core) HandlerAdmit(ctx context.Context, p *store.HandlerAdmitParams) (*store.HandlerAdmitResult, error) {
	return s.HandlerAdmitIn(ctx, s.db, p)
}

// HandlerAdmitIn is HandlerAdmit run by q (store.Tx.HandlerAdmit runs it in
// a claim's transaction).
func (s *Core) HandlerAdmitIn(ctx context.Context, q Querier, p *store.HandlerAdmitParams) (*store.HandlerAdmitResult, error) {
	res := &store.HandlerAdmitResult{Granted: map[int64]bool{}}
	if len(p.StepIDs) == 0 {
		return res, nil
	}
	rows, err := q.Query(ctx, s.Q("HandlerAdmit"), p.Class, p.Limit, p.Owner, s.IDs(p.StepIDs))
	if err != nil {
		return nil, fmt.Errorf("handler class %s: admit %d steps: %w", p.Class, len(p.StepIDs), err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var granted bool
		var running int
		if err := rows.Scan(&id, &granted, &running); err != nil {
			return nil, fmt.Errorf("handler class %s: admit: %w", p.Class, err)
		}
		if granted {
			res.Granted[id] = true
		}
		res.Running = running
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("handler class %s: admit: %w", p.Class, err)
	}
	return res, nil
}

// HandlerRunning implements store.HandlerLimiter.
func (s *Core) HandlerRunning(ctx context.Context, classes []string) (map[string]int, error) {
	out := map[string]int{}
	if len(classes) == 0 {
		return out, nil
	}
	rows, err := s.db.Query(ctx, s.Q("HandlerRunning"), s.Strs(classes))
	if err != nil {
		return nil, fmt.Errorf("handler class slots: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var class string
		var n int
		if err := rows.Scan(&class, &n); err != nil {
			return nil, fmt.Errorf("handler class slots: %w", err)
		}
		out[class] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("handler class slots: %w", err)
	}
	return out, nil
}
