package engine

import (
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

func TestDecideTable(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		sum  store.TaskSummary
		want Action
	}{
		{"all complete", store.TaskSummary{Total: 3, Complete: 3}, ActionComplete},
		{"error beats ready", store.TaskSummary{Total: 3, Error: 1, Ready: 1, Pending: 1, Complete: 1}, ActionFail},
		{"error beats running", store.TaskSummary{Total: 3, Error: 1, InProgress: 1, Complete: 1}, ActionFail},
		{"error beats waiting", store.TaskSummary{Total: 2, Error: 1, WaitingForRetry: 1}, ActionFail},
		{"ready continues", store.TaskSummary{Total: 2, Ready: 1, Pending: 1, Complete: 1}, ActionContinue},
		{"ready beats running elsewhere", store.TaskSummary{Total: 3, Ready: 1, Pending: 1, InProgress: 1, Complete: 1}, ActionContinue},
		{"running elsewhere", store.TaskSummary{Total: 2, InProgress: 1, Complete: 1}, ActionElsewhere},
		{"running beats waiting", store.TaskSummary{Total: 2, InProgress: 1, WaitingForRetry: 1}, ActionElsewhere},
		{"waiting for retry", store.TaskSummary{Total: 2, WaitingForRetry: 1, Complete: 1, EarliestRetryAt: &at}, ActionWait},
		{"blocked by cancelled parent", store.TaskSummary{Total: 2, Pending: 1, Cancelled: 1}, ActionBlock},
		{"blocked pending without ready", store.TaskSummary{Total: 2, Pending: 1, Complete: 1}, ActionBlock},
		{"empty task completes", store.TaskSummary{}, ActionComplete},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := Decide(&tc.sum)
			require.Equal(t, tc.want, d.Action, d.Reason)
			require.NotEmpty(t, d.Reason)
			if tc.want == ActionWait {
				require.Equal(t, &at, d.RetryAt)
			}
		})
	}
}

func TestBusNeverBlocks(t *testing.T) {
	t.Parallel()
	b := NewBus()
	slow, cancel := b.Subscribe(2)
	defer cancel()
	fast, cancelFast := b.Subscribe(100)
	defer cancelFast()
	done := make(chan struct{})
	go func() {
		for i := 0; i < 50; i++ {
			b.Publish(eventN(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a slow subscriber")
	}
	require.Len(t, slow, 2)
	require.Len(t, fast, 50)
	require.Equal(t, int64(48), b.Dropped())
	for i := 0; i < 50; i++ {
		ev := <-fast
		require.Equal(t, int64(i), ev.TaskID, "events arrive in order")
	}
}

func eventN(i int) taskertype.Event {
	return taskertype.Event{Kind: taskertype.EventStepStarted, TaskID: int64(i)}
}

func TestUnlockTrackerWaitsForAllParents(t *testing.T) {
	u := &unlockTracker{children: map[string][]string{"root": {"l1", "l2", "l3"}, "l1": {"join"}, "l2": {"join"},
		"l3": {"join"}}, waiting: map[string]int{"root": 0, "l1": 1, "l2": 1, "l3": 1, "join": 3}}
	if got := u.completed("root"); !reflect.DeepEqual(got.names, []string{"l1", "l2", "l3"}) || got.unknown {
		t.Fatalf("the leaves' only parent completed: they are unlocked; got %+v", got)
	}
	if u.completed("l1").any() || u.completed("l3").any() {
		t.Fatal("join still waits for l2")
	}
	if got := u.completed("l2"); !reflect.DeepEqual(got.names, []string{"join"}) {
		t.Fatalf("join's last parent completed: it is unlocked; got %+v", got)
	}
	if u.completed("join").any() {
		t.Fatal("join has no children")
	}
	if !u.hasChildren("l2") || u.hasChildren("join") {
		t.Fatal("l2 has a child, join none")
	}
	var unknown *unlockTracker // template not loaded here
	if !unknown.hasChildren("anything") {
		t.Fatal("without the template any step may have children")
	}
	if got := unknown.completed("anything"); !got.unknown || !got.any() {
		t.Fatal("without the template every completion may unlock a step")
	}
}

func TestRetryDecisionTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                  string
		attempts, maxAttempts int
		retryable, permanent  bool
		want                  noRetry
	}{
		{"first failure retries", 1, 3, true, false, retryAllowed},
		{"second failure retries", 2, 3, true, false, retryAllowed},
		{"last attempt exhausts", 3, 3, true, false, noRetryExhausted},
		{"over the limit exhausts", 4, 3, true, false, noRetryExhausted},
		{"single attempt exhausts", 1, 1, true, false, noRetryExhausted},
		{"not retryable", 1, 3, false, false, noRetryNotRetryable},
		{"permanent error beats attempts left", 1, 3, true, true, noRetryPermanent},
		{"permanent error beats not retryable", 1, 3, false, true, noRetryPermanent},
		{"not retryable beats exhausted", 3, 3, false, false, noRetryNotRetryable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, retryDecision(tc.attempts, tc.maxAttempts, tc.retryable, tc.permanent))
		})
	}
}
