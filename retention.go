package tasker

import (
	"context"
	"time"

	"github.com/tasker-systems/tasker/internal/engine"
)

// Retention defaults (Config.Retention, RetentionFailed, PruneInterval,
// PruneBatch) and the values that keep tasks for ever. See
// docs/flow-control.md#retention.
const (
	// RetentionDefault is Config.Retention's default: a week.
	RetentionDefault = 7 * 24 * time.Hour
	// RetentionFailedDefault is Config.RetentionFailed's default: a month.
	RetentionFailedDefault = 30 * 24 * time.Hour
	// RetainForever, as Config.Retention or RetentionFailed, keeps such
	// tasks for ever.
	RetainForever time.Duration = -1
	// RetentionForever is a Template's RetentionSeconds (or
	// RetentionFailedSeconds) when its YAML says `retention: forever`.
	RetentionForever int64 = -1
	// PruneIntervalDefault is Config.PruneInterval's default.
	PruneIntervalDefault = time.Minute
	// PruneBatchDefault is Config.PruneBatch's default.
	PruneBatchDefault = 500
)

// PruneOptions tunes Client.Prune.
type PruneOptions struct {
	// OlderThan, when > 0, replaces every task's own retention: every task
	// that finished more than this long ago is deleted, kept for ever or not.
	OlderThan time.Duration
	// Batch is how many tasks one transaction deletes (0: Config.PruneBatch).
	Batch int
	// MaxBatches stops after this many batches (0: until none is due).
	MaxBatches int
	// Pause, when > 0, is waited between two batches: at least Pause and
	// at least four times as long as the batch took (runners use 100 ms).
	Pause time.Duration
	// DryRun only counts the tasks that are due (PruneReport.Due).
	DryRun bool
	// Progress, when set, is called after each batch with the tasks
	// deleted so far.
	Progress func(deleted int)
}

// PruneReport is what Client.Prune did.
type PruneReport struct {
	// Due counts the tasks due for pruning (DryRun only).
	Due int
	// Deleted counts the tasks deleted, in Batches transactions.
	Deleted, Batches int
	// Busy reports that another process was pruning, so this call stopped.
	Busy bool
	// Took is how long the call took.
	Took time.Duration
}

// Prune deletes the finished tasks whose retention has passed (or that
// finished more than o.OlderThan ago), with their steps, edges,
// transitions and queue records, o.Batch tasks per transaction, oldest due
// first, until none is due or another process is pruning. Run does this
// every Config.PruneInterval; Prune is for doing it by hand (`tasker
// prune`). A pruned task's idempotency key can start a new task.
func (c *Client) Prune(ctx context.Context, o PruneOptions) (*PruneReport, error) {
	rep, err := c.engine.Prune(ctx, engine.PruneOptions{OlderThan: o.OlderThan, Batch: o.Batch,
		MaxBatches: o.MaxBatches, Pause: o.Pause, DryRun: o.DryRun, Progress: o.Progress})
	if rep == nil {
		return nil, err
	}
	return &PruneReport{Due: rep.Due, Deleted: rep.Deleted, Batches: rep.Batches, Busy: rep.Busy, Took: rep.Took}, err
}
