package engine

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
)

// Retention defaults (Config.Retention, RetentionFailed, PruneInterval,
// PruneBatch) and the value that keeps tasks for ever.
const (
	// RetentionDefault is how long a task that finished complete,
	// cancelled or resolved manually is kept when neither its template nor
	// Config.Retention says: a week, long enough to look at last week's
	// runs on the dashboard and to notice a problem after a weekend, short
	// enough that a busy deployment's tables stay small (River deletes
	// completed jobs after a day; a workflow's history is read more often).
	RetentionDefault = 7 * 24 * time.Hour
	// RetentionFailedDefault is how long a task that failed (error) is kept
	// by default: a month, because a failed task is what an operator
	// investigates, and can still retry, after the fact.
	RetentionFailedDefault = 30 * 24 * time.Hour
	// RetainForever, as Config.Retention or RetentionFailed, keeps such
	// tasks for ever (any negative duration does).
	RetainForever time.Duration = -1
	// PruneIntervalDefault is how often a Run loop prunes.
	PruneIntervalDefault = time.Minute
	// PruneBatchDefault is how many tasks one pruning transaction deletes.
	PruneBatchDefault = 500
	// pruneBatchPause is the shortest pause between two batches of one
	// runner's pruning round: work claims the database in between.
	pruneBatchPause = 100 * time.Millisecond
	// pruneBusyShare: a pause between batches is at least this many times
	// the batch's duration.
	pruneBusyShare = 4
)

// applyRetentionDefaults fills the zero retention fields of cfg.
func (cfg *Config) applyRetentionDefaults() error {
	cfg.Retention = cmp.Or(cfg.Retention, RetentionDefault)
	cfg.RetentionFailed = cmp.Or(cfg.RetentionFailed, RetentionFailedDefault)
	cfg.PruneInterval = cmp.Or(cfg.PruneInterval, PruneIntervalDefault)
	cfg.PruneBatch = cmp.Or(cfg.PruneBatch, PruneBatchDefault)
	if cfg.PruneBatch < 1 {
		return fmt.Errorf("engine: Config.PruneBatch must be at least 1, got %d", cfg.PruneBatch)
	}
	for name, d := range map[string]time.Duration{"Retention": cfg.Retention, "RetentionFailed": cfg.RetentionFailed} {
		if d > 0 && d < template.RetentionMin {
			return fmt.Errorf("engine: Config.%s must be at least %s (or negative: for ever), got %s", name,
				template.RetentionMin, d)
		}
	}
	return nil
}

// taskRetention is how long a task of tmpl is kept after it finished and
// after it failed (nil: for ever): the template's retention and
// retention_failed, else Config.Retention for the first and, for the
// second, the longer of the first and Config.RetentionFailed, so that a
// failed task is never kept shorter than a complete one unless its
// template says so.
func (e *Engine) taskRetention(tmpl *template.Template) (keep, keepFailed *time.Duration) {
	fromTemplate := func(secs int64) (*time.Duration, bool) {
		switch {
		case secs == template.RetentionForever:
			return nil, true
		case secs > 0:
			d := time.Duration(secs) * time.Second
			return &d, true
		}
		return nil, false
	}
	fromConfig := func(d time.Duration) *time.Duration {
		if d < 0 {
			return nil
		}
		return &d
	}
	keep, set := fromTemplate(tmpl.RetentionSeconds)
	if !set {
		keep = fromConfig(e.cfg.Retention)
	}
	keepFailed, set = fromTemplate(tmpl.RetentionFailedSeconds)
	if !set {
		keepFailed = fromConfig(e.cfg.RetentionFailed)
		if keep == nil {
			keepFailed = nil
		} else if keepFailed != nil && *keepFailed < *keep {
			keepFailed = keep
		}
	}
	return keep, keepFailed
}

// PruneOptions tunes Prune.
type PruneOptions struct {
	// OlderThan, when > 0, replaces every task's own retention: every task
	// that finished more than this long ago is deleted, whatever its
	// retention (`tasker prune --older-than`).
	OlderThan time.Duration
	// Batch is how many tasks one transaction deletes; 0 means
	// Config.PruneBatch.
	Batch int
	// MaxBatches stops after this many batches (0: until none is due).
	MaxBatches int
	// Pause, when > 0, is waited between two batches, on the engine's
	// clock: at least Pause and at least pruneBusyShare times as long as
	// the batch took, so that a backlog takes at most a fifth of the
	// database's time (a SQLite batch holds the write lock throughout).
	Pause time.Duration
	// DryRun only counts the tasks that are due.
	DryRun bool
	// Progress, when set, is called after each batch with the tasks
	// deleted so far.
	Progress func(deleted int)
}

// PruneReport is what Prune did.
type PruneReport struct {
	// Due counts the tasks due for pruning (DryRun only).
	Due int
	// Deleted counts the tasks deleted, in Batches transactions.
	Deleted, Batches int
	// Busy reports that another pruner was deleting, so this one stopped.
	Busy bool
	// Took is how long the round took.
	Took time.Duration
}

// Prune deletes the finished tasks that are due (their completion plus
// their retention is past, or OlderThan says), with every row keyed by
// them, in batches of o.Batch tasks per transaction, oldest due first,
// until none is due or another pruner is deleting.
func (e *Engine) Prune(ctx context.Context, o PruneOptions) (*PruneReport, error) {
	start := time.Now()
	p := &store.TaskPruneParams{Now: e.now(), Limit: cmp.Or(o.Batch, e.cfg.PruneBatch)}
	if o.OlderThan < 0 || p.Limit < 1 {
		return nil, fmt.Errorf("prune: older-than must not be negative and batch must be at least 1 (got %s, %d)",
			o.OlderThan, p.Limit)
	}
	if o.OlderThan > 0 {
		before := p.Now.Add(-o.OlderThan)
		p.FinishedBefore = &before
	}
	rep := &PruneReport{}
	if o.DryRun {
		n, err := e.store.TaskPruneCount(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
		rep.Due, rep.Took = n, time.Since(start)
		return rep, nil
	}
	for o.MaxBatches <= 0 || rep.Batches < o.MaxBatches {
		batchStart := time.Now()
		res, err := e.store.TaskPrune(ctx, p)
		if err != nil {
			rep.Took = time.Since(start)
			return rep, fmt.Errorf("prune (after %d tasks): %w", rep.Deleted, err)
		}
		if res.Busy {
			rep.Busy = true
			break
		}
		rep.Batches++
		rep.Deleted += res.Deleted
		if o.Progress != nil {
			o.Progress(rep.Deleted)
		}
		if res.Deleted < p.Limit || (o.Pause > 0 && !e.sleep(ctx, max(o.Pause, pruneBusyShare*time.Since(batchStart)))) {
			break
		}
	}
	rep.Took = time.Since(start)
	return rep, nil
}

// pruners tracks the pruning loop of an engine: one at a time, run by the
// first of its Run loops.
type pruners struct {
	mu      sync.Mutex
	running bool
}

// runPruner starts the engine's pruning loop for the life of ctx, unless
// another Run loop of this engine already runs one or PruneInterval is
// negative, and returns a function that stops it and waits for it.
// Among processes, the store's pruning lock lets one delete at a time.
func (e *Engine) runPruner(ctx context.Context) func() {
	if e.cfg.PruneInterval < 0 {
		return func() {}
	}
	e.prune.mu.Lock()
	defer e.prune.mu.Unlock()
	if e.prune.running {
		return func() {}
	}
	e.prune.running = true
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := e.cfg.Clock.NewTicker(e.cfg.PruneInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C():
				e.pruneRound(ctx)
			}
		}
	}()
	return func() {
		cancel()
		<-done
		e.prune.mu.Lock()
		e.prune.running = false
		e.prune.mu.Unlock()
	}
}

// pruneRound is one periodic round: due tasks in bounded batches with a
// pause between them, and one log line.
func (e *Engine) pruneRound(ctx context.Context) {
	rep, err := e.Prune(ctx, PruneOptions{Pause: pruneBatchPause})
	switch {
	case err != nil && ctx.Err() == nil:
		e.log.Warn("prune finished tasks", "err", err)
	case err != nil:
	case rep.Deleted > 0:
		e.log.Info("pruned finished tasks", "deleted", rep.Deleted, "batches", rep.Batches, "busy", rep.Busy,
			"took", rep.Took.Round(time.Millisecond))
	default:
		e.log.Debug("prune round: nothing due", "busy", rep.Busy)
	}
}
