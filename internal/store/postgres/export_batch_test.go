package postgres

import "github.com/tasker-systems/tasker/internal/store"

// RecordBatchForTest runs the StepRecordFinalize calls as one combined
// batch, as the record combiner does when they arrive together, and
// returns each call's results.
func (s *Store) RecordBatchForTest(ps []*store.StepRecordParams,
	decides []func(*store.TaskSummary) *store.TaskTransitionParams) ([][]bool, []*store.TransitionResult, []error) {
	reqs := make([]*recordReq, len(ps))
	for i, p := range ps {
		reqs[i] = newRecordReq(p, decides[i])
		reqs[i].done = make(chan struct{})
	}
	s.records.run(reqs)
	applied := make([][]bool, len(ps))
	trs := make([]*store.TransitionResult, len(ps))
	errs := make([]error, len(ps))
	for i, r := range reqs {
		<-r.done
		applied[i], trs[i], errs[i] = r.applied, r.tr, r.err
	}
	return applied, trs, errs
}

// ClaimBatchForTest runs the StepClaim calls as one combined batch, as the
// claim combiner does when they arrive together, and returns each call's
// claimed steps.
func (s *Store) ClaimBatchForTest(ps []*store.StepClaimParams) ([][]*store.ClaimedStep, []error) {
	reqs := make([]*claimReq, len(ps))
	for i, p := range ps {
		reqs[i] = &claimReq{call: call{done: make(chan struct{})}, p: p}
	}
	s.claims.run(reqs)
	claimed := make([][]*store.ClaimedStep, len(ps))
	errs := make([]error, len(ps))
	for i, r := range reqs {
		<-r.done
		claimed[i], errs[i] = r.claimed, r.err
	}
	return claimed, errs
}
