package engine

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

// claimLog records when each queue claim that found work started, and how
// many records it got.
type claimLog struct {
	store.Store
	mu     sync.Mutex
	starts []time.Time
	sizes  []int
}

func (c *claimLog) QueueClaim(ctx context.Context, p *store.QueueClaimParams) ([]*store.QueueEntry, error) {
	t0 := time.Now()
	out, err := c.Store.QueueClaim(ctx, p)
	if len(out) > 0 {
		c.mu.Lock()
		c.starts = append(c.starts, t0)
		c.sizes = append(c.sizes, len(out))
		c.mu.Unlock()
	}
	return out, err
}

// Unwrap lets the engine find the store's optional capabilities.
func (c *claimLog) Unwrap() store.Store { return c.Store }

// TestClaimCooldown: while tasks keep arriving one at a time, a runner
// claims at most once per ClaimCooldown, and so claims the tasks created
// meanwhile together; every task still completes.
func TestClaimCooldown(t *testing.T) {
	for name, open := range map[string]func(testing.TB) store.Store{
		"sqlite":   func(tb testing.TB) store.Store { return testdb.SQLite(tb) },
		"postgres": func(tb testing.TB) store.Store { return testdb.Postgres(tb) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := &claimLog{Store: open(t)}
			reg := template.NewRegistry()
			tmpl, errs := template.Parse("one.yaml", []byte(createsTemplate), "")
			require.Empty(t, errs)
			require.NoError(t, reg.Add(tmpl))
			const cooldown = 100 * time.Millisecond
			e, err := New(Config{Store: st, Templates: reg, ClaimCooldown: cooldown, PollInterval: time.Minute})
			require.NoError(t, err)
			e.RegisterHandler("Noop", taskertype.StepHandlerFunc(func(context.Context, *taskertype.StepContext) (any, error) {
				return nil, nil
			}))
			done, unsub := e.Bus().Subscribe(64, taskertype.EventTaskCompleted)
			defer unsub()
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan struct{})
			go func() { defer close(ran); _ = e.Run(ctx, 16) }()
			defer func() { cancel(); <-ran }()

			// A lone task on an idle runner.
			_, _, err = e.InitializeTask(ctx, createsReq(0, ""))
			require.NoError(t, err)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the first task did not complete")
			}

			// Tasks created back to back: claims that find work are at
			// least a cooldown apart.
			const n = 20
			for i := 1; i <= n; i++ {
				_, _, err := e.InitializeTask(ctx, createsReq(i, ""))
				require.NoError(t, err)
				time.Sleep(cooldown / 10)
			}
			for range n {
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					t.Fatal("tasks did not complete")
				}
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			total := 0
			for i, s := range st.sizes {
				total += s
				if i > 0 {
					require.GreaterOrEqual(t, st.starts[i].Sub(st.starts[i-1]), cooldown, "claims %d and %d", i-1, i)
				}
			}
			// 21 tasks, each claimed once (a task's record is claimed again
			// only when its coordinator gives it back, which these do not).
			require.Equal(t, n+1, total)
			require.Less(t, len(st.sizes), n, "claims that found work: %v", st.sizes)
		})
	}
}

// TestClaimCooldownNotInABacklog: a runner working off a backlog (its
// claims come back full) claims as soon as a worker is free; the cooldown
// is for a queue that ran dry, where new tasks are left to gather.
func TestClaimCooldownNotInABacklog(t *testing.T) {
	t.Parallel()
	st := &claimLog{Store: testdb.SQLite(t)}
	reg := template.NewRegistry()
	tmpl, errs := template.Parse("one.yaml", []byte(createsTemplate), "")
	require.Empty(t, errs)
	require.NoError(t, reg.Add(tmpl))
	const cooldown = time.Hour // a claim held back by it would never come
	e, err := New(Config{Store: st, Templates: reg, ClaimCooldown: cooldown, PollInterval: time.Minute})
	require.NoError(t, err)
	e.RegisterHandler("Noop", taskertype.StepHandlerFunc(func(context.Context, *taskertype.StepContext) (any, error) {
		return nil, nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	const n = 12
	for i := range n {
		_, _, err := e.InitializeTask(ctx, createsReq(i, ""))
		require.NoError(t, err)
	}
	done, unsub := e.Bus().Subscribe(64, taskertype.EventTaskCompleted)
	defer unsub()
	ran := make(chan struct{})
	go func() { defer close(ran); _ = e.Run(ctx, 2) }()
	defer func() { cancel(); <-ran }()
	for range n {
		select {
		case <-done:
		case <-time.After(time.Minute):
			st.mu.Lock()
			defer st.mu.Unlock()
			t.Fatalf("the backlog was not worked off; claims that found work: %v", st.sizes)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	require.GreaterOrEqual(t, len(st.sizes), n/2, "two workers took the backlog a claim at a time: %v", st.sizes)
}
