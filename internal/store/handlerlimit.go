package store

import "context"

// HandlerLimiter is the optional capability of a store that keeps
// handler-class limits: at most Limit attempts of one handler class running
// at once across every process on the database. A step holds a slot of its
// class from its admission until it leaves in_progress by any path (a
// result, a throttle, a release, the lease rescuer, a cancellation), so a
// crashed runner's slots free when the rescuer returns its steps, and never
// earlier. Both SQL stores implement it.
type HandlerLimiter interface {
	// HandlerAdmit gives the steps p.StepIDs (in_progress, leased by
	// p.Owner, of class p.Class) the class's free slots under p.Limit, in
	// the order given, atomically across processes; the others are marked
	// as waiting for a slot (a freed slot wakes the oldest of them).
	HandlerAdmit(ctx context.Context, p *HandlerAdmitParams) (*HandlerAdmitResult, error)
	// HandlerRunning returns how many slots each of classes holds now
	// (classes holding none are absent).
	HandlerRunning(ctx context.Context, classes []string) (map[string]int, error)
}

// HandlerAdmitParams is the input of HandlerAdmit.
type HandlerAdmitParams struct {
	Class string
	Limit int
	Owner string
	// StepIDs are the steps asking for a slot, first served first.
	StepIDs []int64
}

// HandlerAdmitResult is what HandlerAdmit decided.
type HandlerAdmitResult struct {
	// Granted are the steps given a slot: they may start their handler.
	// A step of StepIDs not in it may not (refused, or no longer held by
	// the owner).
	Granted map[int64]bool
	// Running is how many slots other steps held when the steps asked.
	Running int
}
