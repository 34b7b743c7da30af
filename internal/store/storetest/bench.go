package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
)

// FanOut is a task of width+2 steps: root -> width leaves -> join, for
// benchmarks.
func FanOut(width int, key string) *store.TaskCreateParams {
	steps := make([]store.StepSpec, 0, width+2)
	steps = append(steps, store.StepSpec{Name: "root", HandlerClass: "tasker:noop", Retryable: true, MaxAttempts: 3})
	leaves := make([]string, width)
	for i := range leaves {
		leaves[i] = fmt.Sprintf("leaf_%05d", i)
		steps = append(steps, store.StepSpec{Name: leaves[i], HandlerClass: "tasker:noop", Retryable: true,
			MaxAttempts: 3, Parents: []string{"root"}})
	}
	steps = append(steps, store.StepSpec{Name: "join", HandlerClass: "tasker:noop", Retryable: true, MaxAttempts: 3,
		Parents: leaves})
	now := time.Now()
	return &store.TaskCreateParams{Namespace: "bench", Name: "fanout", Version: "1.0.0", Context: []byte(`{}`),
		MaxParallelSteps: 100, Steps: steps, Actor: "bench", Now: now, IdempotencyKey: key,
		Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: now}}
}

// RoundTripper is a store that counts its statements.
type RoundTripper interface {
	store.Store
	RoundTrips() int64
}

// BenchTaskCreate measures creating a fan-out task of width+2 steps
// (width leaves, 2*width edges, width+2 transitions, one enqueue record)
// in one transaction, reporting the statements per task.
func BenchTaskCreate(b *testing.B, st RoundTripper, width int) {
	ctx := context.Background()
	p := FanOut(width, "")
	var trips int64
	n := 0
	for b.Loop() {
		rt0 := st.RoundTrips()
		if _, err := st.TaskCreate(ctx, p); err != nil {
			b.Fatal(err)
		}
		trips += st.RoundTrips() - rt0
		n++
	}
	b.ReportMetric(float64(trips)/float64(n), "roundtrips/op")
}
