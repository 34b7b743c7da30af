package sqlite_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/storetest"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

// BenchmarkTaskCreate1000 measures creating a 1,000-step fan-out task in
// one transaction.
func BenchmarkTaskCreate1000(b *testing.B) {
	storetest.BenchTaskCreate(b, testdb.SQLite(b), 998)
}

// BenchmarkSQLiteRecordBatch measures recording one batch of n successes of
// a fan-out's leaves on SQLite, reported per step: the cost per step should
// not grow with the batch (it did, quadratically, while the outcomes were
// joined by re-reading their JSON document for every step).
func BenchmarkSQLiteRecordBatch(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			st := testdb.SQLite(b)
			ctx := context.Background()
			res, err := st.TaskCreate(ctx, storetest.FanOut(n, ""))
			if err != nil {
				b.Fatal(err)
			}
			id := res.Task.ID
			now := time.Now()
			root, err := st.StepClaim(ctx, &store.StepClaimParams{TaskID: id, Owner: "bench", Limit: 1, Now: now,
				LeaseUntil: now.Add(time.Minute)})
			if err != nil || len(root) != 1 {
				b.Fatalf("claim root: %v", err)
			}
			if _, err := st.StepRecord(ctx, &store.StepRecordParams{TaskID: id, Owner: "bench", Now: now,
				Outcomes: []store.StepOutcome{{StepID: root[0].Step.ID, To: taskertype.StepStateComplete, Event: "succeed"}}}); err != nil {
				b.Fatal(err)
			}
			var total time.Duration
			iters := 0
			for b.Loop() {
				b.StopTimer()
				now := time.Now()
				cs, err := st.StepClaim(ctx, &store.StepClaimParams{TaskID: id, Owner: "bench", Limit: n, Now: now,
					LeaseUntil: now.Add(time.Minute)})
				if err != nil || len(cs) != n {
					b.Fatalf("claim: %v (%d of %d)", err, len(cs), n)
				}
				outs := make([]store.StepOutcome, len(cs))
				for i, c := range cs {
					outs[i] = store.StepOutcome{StepID: c.Step.ID, To: taskertype.StepStateWaitingForRetry,
						Event: "fail_retryable", Error: []byte(`{"kind":"retryable"}`), NextRetryAt: &now}
				}
				b.StartTimer()
				t0 := time.Now()
				if _, err := st.StepRecord(ctx, &store.StepRecordParams{TaskID: id, Owner: "bench", Now: now, Outcomes: outs}); err != nil {
					b.Fatal(err)
				}
				total += time.Since(t0) / time.Duration(len(outs))
				iters++
				b.StopTimer()
				ids := make([]int64, len(cs))
				for i, c := range cs {
					ids[i] = c.Step.ID
				}
				// Back to pending with no attempt counted, for the next round.
				if _, err := st.StepTransition(ctx, &store.StepTransitionParams{TaskID: id, StepIDs: ids,
					From: []taskertype.StepState{taskertype.StepStateWaitingForRetry}, To: taskertype.StepStatePending,
					Event: "retry", Actor: "bench", Now: now, ResetAttempts: true}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Microseconds())/float64(iters), "µs/step")
		})
	}
}

// BenchmarkTaskPrune measures deleting a batch of 500 due 12-step tasks.
func BenchmarkTaskPrune(b *testing.B) { storetest.BenchTaskPrune(b, testdb.SQLite(b)) }
