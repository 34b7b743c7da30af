package sqlstore

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
