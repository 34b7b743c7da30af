package httpapi_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/httpapi"
)

// dispatch calls one RPC method through the Dispatcher and decodes its result.
func dispatch(t *testing.T, d *httpapi.Dispatcher, method string, params any) map[string]any {
	t.Helper()
	b, err := json.Marshal(params)
	require.NoError(t, err)
	res, err := d.Call(context.Background(), method, b)
	require.NoError(t, err, method)
	out, err := json.Marshal(res)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(out, &doc))
	return doc
}

// pollTaskIDs polls a subscription once and returns the task ids of its events.
func pollTaskIDs(t *testing.T, d *httpapi.Dispatcher, sub string, max int) []int64 {
	t.Helper()
	doc := dispatch(t, d, "events_poll", map[string]any{"subscription_id": sub, "max": max})
	var ids []int64
	for _, e := range doc["events"].([]any) {
		ev := e.(map[string]any)
		require.Equal(t, "task.initialized", ev["name"])
		ids = append(ids, int64(ev["task_id"].(float64)))
	}
	return ids
}

func createTasks(t *testing.T, d *httpapi.Dispatcher, n int) []int64 {
	t.Helper()
	ids := make([]int64, n)
	for i := range ids {
		created := dispatch(t, d, "initialize_task", map[string]any{"namespace": "test", "name": "chain", "version": "1.0.0"})
		ids[i] = int64(created["task"].(map[string]any)["task_id"].(float64))
	}
	return ids
}

func TestSubscriptionGroupsShareEvents(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+t.TempDir()+"/groups.db")
	d := httpapi.NewDispatcher(c, "test")
	defer d.Close()

	kinds := []string{"task.initialized"}
	m1 := dispatch(t, d, "events_subscribe", map[string]any{"kinds": kinds, "group": "rails-enqueue"})
	require.Equal(t, "rails-enqueue", m1["group"])
	require.EqualValues(t, 1, m1["members"])
	m2 := dispatch(t, d, "events_subscribe", map[string]any{"kinds": kinds, "group": "rails-enqueue"})
	require.EqualValues(t, 2, m2["members"])
	solo := dispatch(t, d, "events_subscribe", map[string]any{"kinds": kinds})["subscription_id"].(string)
	s1, s2 := m1["subscription_id"].(string), m2["subscription_id"].(string)

	// A member must ask for the group's kinds.
	_, err := d.Call(context.Background(), "events_subscribe", []byte(`{"group":"rails-enqueue","kinds":["task.enqueue"]}`))
	eb, status := httpapi.ErrorOf(err)
	require.Equal(t, 400, status)
	require.Equal(t, "invalid_request", eb.Code)
	_, err = d.Call(context.Background(), "events_subscribe", []byte(`{"group":"  "}`))
	_, status = httpapi.ErrorOf(err)
	require.Equal(t, 400, status)

	want := createTasks(t, d, 20)
	// Members poll alternately, a few events at a time: each event goes to
	// exactly one of them.
	var got1, got2 []int64
	for len(got1)+len(got2) < len(want) {
		n1 := pollTaskIDs(t, d, s1, 3)
		n2 := pollTaskIDs(t, d, s2, 3)
		require.False(t, len(n1) == 0 && len(n2) == 0, "events missing: got %v and %v of %v", got1, got2, want)
		got1, got2 = append(got1, n1...), append(got2, n2...)
	}
	require.NotEmpty(t, got1)
	require.NotEmpty(t, got2)
	for _, id := range got1 {
		require.NotContains(t, got2, id, "event of task %d delivered to both members", id)
	}
	all := append(slices.Clone(got1), got2...)
	slices.Sort(all)
	require.Equal(t, want, all)
	require.Empty(t, pollTaskIDs(t, d, s1, 0))
	require.Empty(t, pollTaskIDs(t, d, s2, 0))

	// A subscription without a group still receives everything, in order.
	require.Equal(t, want, pollTaskIDs(t, d, solo, 0))

	// Concurrent long polls of two members: still one delivery per event.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen []int64
	)
	stop := make(chan struct{})
	for _, sub := range []string{s1, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				doc, err := d.Call(context.Background(), "events_poll",
					[]byte(`{"subscription_id":"`+sub+`","wait_ms":20,"max":2}`))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				b, _ := json.Marshal(doc)
				var p struct {
					Events []struct {
						TaskID int64 `json:"task_id"`
					} `json:"events"`
				}
				_ = json.Unmarshal(b, &p)
				for _, e := range p.Events {
					seen = append(seen, e.TaskID)
				}
				mu.Unlock()
			}
		}()
	}
	more := createTasks(t, d, 20)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= len(more)
	}, 10*time.Second, 10*time.Millisecond)
	close(stop)
	wg.Wait()
	slices.Sort(seen)
	require.Equal(t, more, seen, "each event exactly once across the group")
}

func TestSubscriptionGroupOutlivesAMember(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+t.TempDir()+"/groups.db")
	d := httpapi.NewDispatcher(c, "test")
	defer d.Close()

	sub := func(kinds ...string) string {
		return dispatch(t, d, "events_subscribe", map[string]any{"kinds": kinds, "group": "g"})["subscription_id"].(string)
	}
	s1, s2 := sub("task.initialized"), sub("task.initialized")
	first := createTasks(t, d, 3)
	require.Equal(t, map[string]any{"unsubscribed": true}, dispatch(t, d, "events_unsubscribe", map[string]any{"subscription_id": s1}))
	// The buffer survives: what was buffered and what comes next reach the
	// remaining member.
	second := createTasks(t, d, 3)
	require.Equal(t, append(first, second...), pollTaskIDs(t, d, s2, 0))
	_, err := d.Call(context.Background(), "events_poll", []byte(`{"subscription_id":"`+s1+`"}`))
	_, status := httpapi.ErrorOf(err)
	require.Equal(t, 404, status)
	require.EqualValues(t, 1, dispatch(t, d, "info", nil)["subscriptions"])

	// A new member joins the live group and competes for its events.
	s3 := sub("task.initialized")
	third := createTasks(t, d, 4)
	got := append(pollTaskIDs(t, d, s3, 0), pollTaskIDs(t, d, s2, 0)...)
	slices.Sort(got)
	require.Equal(t, third, got)

	// With its last member the group ends: a new group of that name may ask
	// for other kinds.
	dispatch(t, d, "events_unsubscribe", map[string]any{"subscription_id": s2})
	dispatch(t, d, "events_unsubscribe", map[string]any{"subscription_id": s3})
	s4 := sub("task.enqueue")
	createTasks(t, d, 1)
	doc := dispatch(t, d, "events_poll", map[string]any{"subscription_id": s4})
	require.Len(t, doc["events"], 1)
	require.Equal(t, "task.enqueue", doc["events"].([]any)[0].(map[string]any)["name"])
}
