// Package storetest is the conformance suite every store.Store must pass.
// Run it with Exercise from a test in the implementation's package; it uses
// real databases only.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// NewStore returns a fresh, migrated, empty store for one test.
type NewStore func(t *testing.T) store.Store

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// diamond: a -> b, a -> c, (b, c) -> d.
func diamond(key string) *store.TaskCreateParams {
	return &store.TaskCreateParams{
		Namespace: "ns", Name: "diamond", Version: "1.0.0", Context: json.RawMessage(`{"n":1}`),
		Initiator: "test", Reason: "conformance", Tags: []string{"x"}, MaxParallelSteps: 4, IdempotencyKey: key,
		Steps: []store.StepSpec{
			{Name: "a", HandlerClass: "h", Retryable: true, MaxAttempts: 3},
			{Name: "b", HandlerClass: "h", Retryable: true, MaxAttempts: 3, Parents: []string{"a"}},
			{Name: "c", HandlerClass: "h", Retryable: false, MaxAttempts: 3, Parents: []string{"a"}},
			{Name: "d", HandlerClass: "h", Retryable: true, MaxAttempts: 1, Parents: []string{"b", "c"}},
		},
		Actor: "test", Now: t0,
		Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: t0},
	}
}

func claimNames(cs []*store.ClaimedStep) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Step.Name
	}
	return out
}

func stepID(t *testing.T, steps []*taskertype.Step, name string) int64 {
	t.Helper()
	for _, s := range steps {
		if s.Name == name {
			return s.ID
		}
	}
	t.Fatalf("no step %q", name)
	return 0
}

func claim(t *testing.T, st store.Store, taskID int64, owner string, now time.Time, limit int) []*store.ClaimedStep {
	t.Helper()
	cs, err := st.StepClaim(context.Background(), &store.StepClaimParams{TaskID: taskID, Owner: owner, Limit: limit,
		Now: now, LeaseUntil: now.Add(time.Minute)})
	require.NoError(t, err)
	return cs
}

func succeed(t *testing.T, st store.Store, taskID int64, owner string, now time.Time, cs ...*store.ClaimedStep) {
	t.Helper()
	outs := make([]store.StepOutcome, len(cs))
	for i, c := range cs {
		outs[i] = store.StepOutcome{StepID: c.Step.ID, To: taskertype.StepStateComplete, Event: "succeed",
			Results: json.RawMessage(fmt.Sprintf(`{"from":%q}`, c.Step.Name))}
	}
	applied, err := st.StepRecord(context.Background(), &store.StepRecordParams{TaskID: taskID, Owner: owner, Now: now, Outcomes: outs})
	require.NoError(t, err)
	for i := range applied {
		require.True(t, applied[i], "outcome %d not applied", i)
	}
}

// Exercise runs the whole conformance suite against the store constructor.
func Exercise(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	t.Run("MigrateUpDownUp", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		status, err := st.MigrationStatus(ctx)
		require.NoError(t, err)
		require.NotEmpty(t, status)
		for _, m := range status {
			require.True(t, m.Applied, "migration %d applied", m.Version)
		}
		down, err := st.MigrateDown(ctx, 0)
		require.NoError(t, err)
		require.Len(t, down, len(status))
		_, err = st.TaskGet(ctx, 1)
		require.Error(t, err, "tables are gone after down")
		up, err := st.MigrateUp(ctx, 0)
		require.NoError(t, err)
		require.Len(t, up, len(status))
		again, err := st.MigrateUp(ctx, 0)
		require.NoError(t, err)
		require.Empty(t, again, "up twice applies nothing")
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		require.True(t, res.Created)
	})

	t.Run("TaskCreateWritesEverything", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		require.True(t, res.Created)
		task := res.Task
		require.Equal(t, taskertype.TaskStatePending, task.State)
		require.Equal(t, "ns", task.Namespace)
		require.JSONEq(t, `{"n":1}`, string(task.Context))
		require.Equal(t, []string{"x"}, task.Tags)
		require.Len(t, res.Steps, 4)
		byName := map[string]*taskertype.Step{}
		for _, s := range res.Steps {
			byName[s.Name] = s
			require.Equal(t, taskertype.StepStatePending, s.State)
			require.Equal(t, 0, s.Attempts)
		}
		require.ElementsMatch(t, []string{"b", "c"}, byName["d"].Parents)
		require.False(t, byName["c"].Retryable)

		trs, err := st.TaskTransitions(ctx, task.ID)
		require.NoError(t, err)
		require.Len(t, trs, 1)
		require.Equal(t, "pending", trs[0].ToState)
		require.True(t, trs[0].MostRecent)
		strs, err := st.StepTransitions(ctx, task.ID)
		require.NoError(t, err)
		require.Len(t, strs, 4)

		q, err := st.QueueList(ctx, 10)
		require.NoError(t, err)
		require.Len(t, q, 1)
		require.Equal(t, task.ID, q[0].TaskID)
		require.Equal(t, "enqueue", q[0].Operation)
	})

	// A small task's rows go in as multi-row INSERTs, a wide one's by COPY
	// on PostgreSQL (64 rows and up): both must write every step, edge and
	// transition. Width w has w+2 steps and transitions and 2w edges:
	// 1 and 30 insert everything, 61 inserts steps and COPYs edges, 62 and
	// 200 COPY everything.
	t.Run("TaskCreateWritesEveryRowAtAnyWidth", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		for _, width := range []int{1, 30, 61, 62, 200} {
			p := diamond("")
			p.Steps = p.Steps[:1] // a
			leaves := make([]string, width)
			for i := range leaves {
				leaves[i] = fmt.Sprintf("leaf_%03d", i)
				p.Steps = append(p.Steps, store.StepSpec{Name: leaves[i], HandlerClass: "h", MaxAttempts: 1, Parents: []string{"a"}})
			}
			p.Steps = append(p.Steps, store.StepSpec{Name: "join", HandlerClass: "h", MaxAttempts: 1, Parents: leaves})
			res, err := st.TaskCreate(ctx, p)
			require.NoError(t, err, "width %d", width)
			steps, err := st.StepList(ctx, res.Task.ID)
			require.NoError(t, err)
			require.Len(t, steps, width+2, "width %d", width)
			for _, s := range steps {
				switch s.Name {
				case "a":
					require.Empty(t, s.Parents)
				case "join":
					require.ElementsMatch(t, leaves, s.Parents, "width %d", width)
				default:
					require.Equal(t, []string{"a"}, s.Parents, "width %d step %s", width, s.Name)
				}
			}
			strs, err := st.StepTransitions(ctx, res.Task.ID)
			require.NoError(t, err)
			require.Len(t, strs, width+2, "width %d: one initial transition per step", width)
		}
	})

	exerciseTaskCreateMany(t, newStore)
	exerciseTaskCreatePaths(t, newStore)
	exerciseTaskCreateNewKeys(t, newStore)
	exerciseTransact(t, newStore)
	exerciseFanOut(t, newStore)
	exerciseRetention(t, newStore)
	exerciseQueueRowMigration(t, newStore)
	exerciseConcurrency(t, newStore)
	exerciseRateLimits(t, newStore)
	exerciseHandlerLimits(t, newStore)

	t.Run("IdempotencyKeyReturnsExisting", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		first, err := st.TaskCreate(ctx, diamond("order-42"))
		require.NoError(t, err)
		second, err := st.TaskCreate(ctx, diamond("order-42"))
		require.NoError(t, err)
		require.False(t, second.Created)
		require.Equal(t, first.Task.ID, second.Task.ID)
		all, err := st.TaskList(ctx, &store.TaskListParams{})
		require.NoError(t, err)
		require.Len(t, all, 1)
	})

	t.Run("IdempotencyWindowExpires", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		at := func(d time.Duration) *store.TaskCreateParams {
			p := diamond("window")
			p.IdempotencyWindow, p.Now = time.Hour, t0.Add(d)
			return p
		}
		first, err := st.TaskCreate(ctx, at(0))
		require.NoError(t, err)
		require.True(t, first.Created)
		within, err := st.TaskCreate(ctx, at(59*time.Minute))
		require.NoError(t, err)
		require.False(t, within.Created, "within the window the key deduplicates")
		require.Equal(t, first.Task.ID, within.Task.ID)
		res, err := st.TaskCreateMany(ctx, []*store.TaskCreateParams{at(2 * time.Hour), at(2 * time.Hour)})
		require.NoError(t, err)
		require.True(t, res[0].Created, "after the window the key starts a new task")
		require.NotEqual(t, first.Task.ID, res[0].Task.ID)
		require.Equal(t, res[0].Task.ID, res[1].Task.ID, "a key repeated in one call still shares the new task")
		require.Equal(t, "window", res[0].Task.IdempotencyKey)
		old, err := st.TaskGet(ctx, first.Task.ID)
		require.NoError(t, err)
		require.Empty(t, old.IdempotencyKey, "the old task gave its key up")
		again, err := st.TaskCreate(ctx, at(2*time.Hour+time.Minute))
		require.NoError(t, err)
		require.False(t, again.Created)
		require.Equal(t, res[0].Task.ID, again.Task.ID)
		forever := diamond("window")
		forever.Now = t0.Add(100 * time.Hour) // no window: the key holds for ever
		kept, err := st.TaskCreate(ctx, forever)
		require.NoError(t, err)
		require.False(t, kept.Created)
	})

	t.Run("ConcurrentIdempotentCreate", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		var wg sync.WaitGroup
		ids := make([]int64, 8)
		errs := make([]error, 8)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := st.TaskCreate(ctx, diamond("same"))
				errs[i] = err
				if err == nil {
					ids[i] = res.Task.ID
				}
			}()
		}
		wg.Wait()
		for i := range ids {
			require.NoError(t, errs[i])
			require.Equal(t, ids[0], ids[i])
		}
	})

	t.Run("BypassedStepsAreResolved", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		p := diamond("")
		p.Steps[1].Bypassed = true
		res, err := st.TaskCreate(ctx, p)
		require.NoError(t, err)
		b := res.Steps[1]
		require.Equal(t, "b", b.Name)
		require.Equal(t, taskertype.StepStateResolvedManually, b.State)
	})

	t.Run("ClaimByNameTakesOnlyReadyNamedSteps", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id := res.Task.ID
		now := t0.Add(time.Second)
		byName := func(names ...string) []*store.ClaimedStep {
			t.Helper()
			cs, err := st.StepClaim(ctx, &store.StepClaimParams{TaskID: id, Owner: "w", Limit: 10, Now: now,
				LeaseUntil: now.Add(time.Minute), Names: names})
			require.NoError(t, err)
			return cs
		}
		require.Empty(t, byName("b", "c"), "b and c wait for a")
		cs := byName("a", "d")
		require.Equal(t, []string{"a"}, claimNames(cs), "d waits for b and c")
		succeed(t, st, id, "w", now, cs...)
		cs = byName("c")
		require.Equal(t, []string{"c"}, claimNames(cs), "only the named step, though b is ready too")
		require.JSONEq(t, `{"from":"a"}`, string(cs[0].DependencyResults["a"]))
		require.Equal(t, []string{"b"}, claimNames(claim(t, st, id, "w", now, 10)), "a claim without names takes b")
		require.Empty(t, byName("c", "nosuchstep"), "c is running")
	})

	t.Run("ClaimFollowsDependencies", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id := res.Task.ID
		now := t0.Add(time.Second)

		cs := claim(t, st, id, "w1", now, 10)
		require.Equal(t, []string{"a"}, claimNames(cs))
		require.Equal(t, 1, cs[0].Step.Attempts)
		require.Empty(t, claim(t, st, id, "w2", now, 10), "a is taken, b/c wait for a")
		succeed(t, st, id, "w1", now, cs...)

		cs = claim(t, st, id, "w1", now, 1)
		require.Equal(t, []string{"b"}, claimNames(cs), "limit respected, id order")
		require.JSONEq(t, `{"from":"a"}`, string(cs[0].DependencyResults["a"]))
		cs2 := claim(t, st, id, "w2", now, 10)
		require.Equal(t, []string{"c"}, claimNames(cs2))
		succeed(t, st, id, "w1", now, cs...)
		require.Empty(t, claim(t, st, id, "w1", now, 10), "d waits for c")
		succeed(t, st, id, "w2", now, cs2...)
		cs = claim(t, st, id, "w1", now, 10)
		require.Equal(t, []string{"d"}, claimNames(cs))
		require.Len(t, cs[0].DependencyResults, 2)
		succeed(t, st, id, "w1", now, cs...)

		sum, err := st.TaskSummary(ctx, id, now)
		require.NoError(t, err)
		require.Equal(t, 4, sum.Total)
		require.Equal(t, 4, sum.Complete)
		require.Equal(t, 0, sum.Ready)

		strs, err := st.StepTransitions(ctx, id)
		require.NoError(t, err)
		require.Len(t, strs, 12, "initialize, claim, succeed per step")
		recent := map[int64]int{}
		for _, tr := range strs {
			if tr.MostRecent {
				recent[tr.StepID]++
				require.Equal(t, "complete", tr.ToState)
			}
		}
		require.Len(t, recent, 4)
	})

	t.Run("TaskStartAndClaim", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id := res.Task.ID
		start := func() *store.TaskTransitionParams {
			return &store.TaskTransitionParams{TaskID: id, From: []taskertype.TaskState{taskertype.TaskStatePending,
				taskertype.TaskStateWaitingForRetry}, To: taskertype.TaskStateInProgress, Event: "start", Actor: "r1", Now: t0}
		}
		claimP := &store.StepClaimParams{TaskID: id, Owner: "r1", Limit: 4, Now: t0, LeaseUntil: t0.Add(time.Minute)}
		tr, got, claimed, err := st.TaskStartAndClaim(ctx, start(), claimP)
		require.NoError(t, err)
		require.True(t, tr.Changed)
		require.Equal(t, []string{"a"}, claimNames(claimed))
		require.Equal(t, id, got.ID, "the task is returned as it is after the start")
		require.Equal(t, taskertype.TaskStateInProgress, got.State)
		require.Equal(t, 4, got.MaxParallelSteps)
		task, err := st.TaskGet(ctx, id)
		require.NoError(t, err)
		require.Equal(t, taskertype.TaskStateInProgress, task.State)

		// Already in progress: no change, but claiming still happens.
		succeed(t, st, id, "r1", t0, claimed...)
		tr, _, claimed, err = st.TaskStartAndClaim(ctx, start(), claimP)
		require.NoError(t, err)
		require.False(t, tr.Changed)
		require.ElementsMatch(t, []string{"b", "c"}, claimNames(claimed))

		// Limit 0 claims up to the task's own max_parallel_steps.
		one := diamond("")
		one.MaxParallelSteps = 1
		res1, err := st.TaskCreate(ctx, one)
		require.NoError(t, err)
		s1 := start()
		s1.TaskID = res1.Task.ID
		zero := &store.StepClaimParams{TaskID: res1.Task.ID, Owner: "r1", Now: t0, LeaseUntil: t0.Add(time.Minute)}
		_, _, claimed, err = st.TaskStartAndClaim(ctx, s1, zero)
		require.NoError(t, err)
		succeed(t, st, res1.Task.ID, "r1", t0, claimed...)
		_, got, claimed, err = st.TaskStartAndClaim(ctx, s1, zero)
		require.NoError(t, err)
		require.Len(t, claimed, 1, "b and c are ready; max_parallel_steps is 1")
		require.Equal(t, 1, got.MaxParallelSteps)

		// A task outside the start's sources: nothing claimed, state reported.
		res2, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		_, err = st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: res2.Task.ID,
			From: []taskertype.TaskState{taskertype.TaskStatePending}, To: taskertype.TaskStateCancelled,
			Event: "cancel", Actor: "ops", Now: t0})
		require.NoError(t, err)
		s2 := start()
		s2.TaskID = res2.Task.ID
		tr, _, claimed, err = st.TaskStartAndClaim(ctx, s2, &store.StepClaimParams{TaskID: res2.Task.ID, Owner: "r1",
			Limit: 4, Now: t0, LeaseUntil: t0.Add(time.Minute)})
		require.NoError(t, err)
		require.False(t, tr.Changed)
		require.Equal(t, taskertype.TaskStateCancelled, tr.State)
		require.Empty(t, claimed)
		steps, err := st.StepList(ctx, res2.Task.ID)
		require.NoError(t, err)
		for _, s := range steps {
			require.Equal(t, 0, s.Attempts, "step %s", s.Name)
		}
	})

	t.Run("FirstStartClaimsByFirstNames", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		start := func(id int64) *store.TaskTransitionParams {
			return &store.TaskTransitionParams{TaskID: id, From: []taskertype.TaskState{taskertype.TaskStatePending},
				To: taskertype.TaskStateInProgress, Event: "start", Actor: "r1", Now: t0}
		}
		var asked []int64
		claimP := func(id int64, first ...string) *store.StepClaimParams {
			return &store.StepClaimParams{TaskID: id, Owner: "r1", Limit: 4, Now: t0, LeaseUntil: t0.Add(time.Minute),
				FirstNames: func(task *taskertype.Task) []string {
					asked = append(asked, task.ID)
					return first
				}}
		}
		// Two roots, a and x: the first start claims only the one named.
		p := diamond("")
		p.Steps = append(p.Steps, store.StepSpec{Name: "x", HandlerClass: "h", MaxAttempts: 1})
		res, err := st.TaskCreate(ctx, p)
		require.NoError(t, err)
		id := res.Task.ID
		tr, _, claimed, err := st.TaskStartAndClaim(ctx, start(id), claimP(id, "x"))
		require.NoError(t, err)
		require.True(t, tr.Changed)
		require.Equal(t, []string{"x"}, claimNames(claimed), "a is ready too, but not named")
		require.Equal(t, []int64{id}, asked)
		require.Equal(t, []string{"a"}, claimNames(claim(t, st, id, "r1", t0, 4)), "a plain claim takes a")

		// Nil names: every ready step, as without FirstNames.
		res, err = st.TaskCreate(ctx, p)
		require.NoError(t, err)
		_, _, claimed, err = st.TaskStartAndClaim(ctx, start(res.Task.ID), claimP(res.Task.ID))
		require.NoError(t, err)
		require.ElementsMatch(t, []string{"a", "x"}, claimNames(claimed))

		// A task handed back to pending (yield) has run steps: its next start
		// is not its first, and FirstNames is not asked.
		res, err = st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id = res.Task.ID
		_, _, claimed, err = st.TaskStartAndClaim(ctx, start(id), claimP(id))
		require.NoError(t, err)
		succeed(t, st, id, "r1", t0, claimed...)
		_, err = st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: id,
			From: []taskertype.TaskState{taskertype.TaskStateInProgress}, To: taskertype.TaskStatePending,
			Event: "yield", Actor: "r1", Now: t0})
		require.NoError(t, err)
		asked = nil
		tr, _, claimed, err = st.TaskStartAndClaim(ctx, start(id), claimP(id, "a"))
		require.NoError(t, err)
		require.True(t, tr.Changed)
		require.Empty(t, asked)
		require.ElementsMatch(t, []string{"b", "c"}, claimNames(claimed), "a is complete; b and c are ready")
	})

	t.Run("RecordAndFinalizeInOneTransaction", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id := res.Task.ID
		tr, _, _, err := st.TaskStartAndClaim(ctx, &store.TaskTransitionParams{TaskID: id,
			From: []taskertype.TaskState{taskertype.TaskStatePending}, To: taskertype.TaskStateInProgress,
			Event: "start", Actor: "r1", Now: t0}, &store.StepClaimParams{TaskID: id, Owner: "r1", Limit: 4, Now: t0,
			LeaseUntil: t0.Add(time.Minute)})
		require.NoError(t, err)
		require.True(t, tr.Changed)
		steps, err := st.StepList(ctx, id)
		require.NoError(t, err)
		a := stepID(t, steps, "a")
		outcome := func(stepID int64) *store.StepRecordParams {
			return &store.StepRecordParams{TaskID: id, Owner: "r1", Now: t0, Outcomes: []store.StepOutcome{{
				StepID: stepID, To: taskertype.StepStateComplete, Event: "succeed", Results: json.RawMessage(`{}`)}}}
		}
		// The summary handed to decide already sees the recorded outcome;
		// no transition when decide returns nil.
		var seen *store.TaskSummary
		applied, got, err := recordFinalize(ctx, st, outcome(a), func(sum *store.TaskSummary) *store.TaskTransitionParams {
			seen = sum
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, []bool{true}, applied)
		require.Nil(t, got)
		require.Equal(t, 1, seen.Complete)
		require.Equal(t, 2, seen.Ready, "b and c are ready once a is recorded")

		// A transition returned by decide is applied in the same transaction.
		claimed := claim(t, st, id, "r1", t0, 4)
		require.ElementsMatch(t, []string{"b", "c"}, claimNames(claimed))
		succeed(t, st, id, "r1", t0, claimed...)
		d := claim(t, st, id, "r1", t0, 4)
		require.Equal(t, []string{"d"}, claimNames(d))
		_, got, err = recordFinalize(ctx, st, outcome(d[0].Step.ID), func(sum *store.TaskSummary) *store.TaskTransitionParams {
			require.Equal(t, sum.Total, sum.Complete)
			return &store.TaskTransitionParams{TaskID: id, From: []taskertype.TaskState{taskertype.TaskStateInProgress},
				To: taskertype.TaskStateComplete, Event: "complete", Actor: "r1", Now: t0,
				Queue: store.QueueOp{Kind: store.QueueDelete}}
		})
		require.NoError(t, err)
		require.True(t, got.Changed)
		task, err := st.TaskGet(ctx, id)
		require.NoError(t, err)
		require.Equal(t, taskertype.TaskStateComplete, task.State)
		q, err := st.QueueList(ctx, 10)
		require.NoError(t, err)
		require.Empty(t, q)
	})

	t.Run("RecordIsGuardedByLeaseOwner", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		cs := claim(t, st, res.Task.ID, "w1", t0, 10)
		applied, err := st.StepRecord(ctx, &store.StepRecordParams{TaskID: res.Task.ID, Owner: "intruder", Now: t0,
			Outcomes: []store.StepOutcome{{StepID: cs[0].Step.ID, To: taskertype.StepStateComplete, Event: "succeed"}}})
		require.NoError(t, err)
		require.Equal(t, []bool{false}, applied)
		steps, err := st.StepList(ctx, res.Task.ID)
		require.NoError(t, err)
		require.Equal(t, taskertype.StepStateInProgress, steps[0].State)
	})

	t.Run("RetryEligibilityAndBackoff", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id := res.Task.ID
		cs := claim(t, st, id, "w", t0, 10)
		next := t0.Add(10 * time.Second)
		secs := 10
		applied, err := st.StepRecord(ctx, &store.StepRecordParams{TaskID: id, Owner: "w", Now: t0, Outcomes: []store.StepOutcome{{
			StepID: cs[0].Step.ID, To: taskertype.StepStateWaitingForRetry, Event: "fail_retryable",
			Error: json.RawMessage(`{"message":"boom"}`), NextRetryAt: &next, BackoffRequestSeconds: &secs}}})
		require.NoError(t, err)
		require.Equal(t, []bool{true}, applied)

		require.Empty(t, claim(t, st, id, "w", t0.Add(9*time.Second), 10), "backoff not expired")
		sum, err := st.TaskSummary(ctx, id, t0.Add(time.Second))
		require.NoError(t, err)
		require.Equal(t, 1, sum.WaitingForRetry)
		require.NotNil(t, sum.EarliestRetryAt)
		require.True(t, sum.EarliestRetryAt.Equal(next), "earliest retry %v", sum.EarliestRetryAt)

		rd, err := st.StepReadiness(ctx, id, t0.Add(time.Second))
		require.NoError(t, err)
		require.Equal(t, "a", rd[0].Name)
		require.False(t, rd[0].Ready)
		require.False(t, rd[0].BackoffExpired)
		require.True(t, rd[0].RetryEligible)
		require.Equal(t, []string{"a"}, rd[1].BlockingParents)

		cs = claim(t, st, id, "w", next, 10)
		require.Equal(t, []string{"a"}, claimNames(cs))
		require.Equal(t, 2, cs[0].Step.Attempts)
		succeed(t, st, id, "w", next, cs...)

		// c is not retryable: its first attempt runs, a failure ends it.
		cs = claim(t, st, id, "w", next, 10)
		require.Equal(t, []string{"b", "c"}, claimNames(cs))
		steps, err := st.StepList(ctx, id)
		require.NoError(t, err)
		cID := stepID(t, steps, "c")
		_, err = st.StepRecord(ctx, &store.StepRecordParams{TaskID: id, Owner: "w", Now: next, Outcomes: []store.StepOutcome{{
			StepID: cID, To: taskertype.StepStateWaitingForRetry, Event: "fail_retryable"}}})
		require.NoError(t, err)
		rd, err = st.StepReadiness(ctx, id, next.Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, "c", rd[2].Name)
		require.False(t, rd[2].RetryEligible, "non-retryable step gets one attempt")
		require.False(t, rd[2].Ready)
	})

	t.Run("GiveBackAttempt", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		cs := claim(t, st, res.Task.ID, "w", t0, 10)
		_, err = st.StepRecord(ctx, &store.StepRecordParams{TaskID: res.Task.ID, Owner: "w", Now: t0, Outcomes: []store.StepOutcome{{
			StepID: cs[0].Step.ID, To: taskertype.StepStatePending, Event: "release", GiveBackAttempt: true}}})
		require.NoError(t, err)
		cs = claim(t, st, res.Task.ID, "w", t0, 10)
		require.Equal(t, 1, cs[0].Step.Attempts, "released attempt is not counted")
	})

	t.Run("SkippedSatisfiesChildren", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id := res.Task.ID
		succeed(t, st, id, "w", t0, claim(t, st, id, "w", t0, 10)...) // a
		cs := claim(t, st, id, "w", t0, 10)                           // b, c
		require.ElementsMatch(t, []string{"b", "c"}, claimNames(cs))
		outs := make([]store.StepOutcome, len(cs))
		for i, c := range cs {
			outs[i] = store.StepOutcome{StepID: c.Step.ID, To: taskertype.StepStateSkipped, Event: "skip",
				GiveBackAttempt: true, Reason: "when false"}
		}
		applied, err := st.StepRecord(ctx, &store.StepRecordParams{TaskID: id, Owner: "w", Now: t0, Outcomes: outs})
		require.NoError(t, err)
		require.Equal(t, []bool{true, true}, applied)
		steps, err := st.StepList(ctx, id)
		require.NoError(t, err)
		for _, s := range steps {
			if s.Name == "b" || s.Name == "c" {
				require.Equal(t, taskertype.StepStateSkipped, s.State)
				require.Zero(t, s.Attempts, "a skip gives its attempt back")
				require.NotNil(t, s.CompletedAt, "skipped is final")
			}
		}
		cs = claim(t, st, id, "w", t0, 10)
		require.Equal(t, []string{"d"}, claimNames(cs), "skipped parents count as done")
		succeed(t, st, id, "w", t0, cs...)
		sum, err := st.TaskSummary(ctx, id, t0)
		require.NoError(t, err)
		require.Equal(t, sum.Total, sum.Complete, "skipped steps count as complete")
	})

	t.Run("TaskTransitionGuardsAndQueue", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id := res.Task.ID
		tr, err := st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: id, From: []taskertype.TaskState{taskertype.TaskStateInProgress},
			To: taskertype.TaskStateComplete, Event: "complete", Now: t0})
		require.NoError(t, err)
		require.False(t, tr.Changed)
		require.Equal(t, taskertype.TaskStatePending, tr.State)

		tr, err = st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: id, From: []taskertype.TaskState{taskertype.TaskStatePending},
			To: taskertype.TaskStateInProgress, Event: "start", Reason: "go", Actor: "w", Now: t0})
		require.NoError(t, err)
		require.True(t, tr.Changed)
		runAt := t0.Add(30 * time.Second)
		_, err = st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: id, From: []taskertype.TaskState{taskertype.TaskStateInProgress},
			To: taskertype.TaskStateWaitingForRetry, Event: "wait", Now: t0,
			Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "reenqueue", RunAt: runAt}})
		require.NoError(t, err)
		q, err := st.QueueList(ctx, 10)
		require.NoError(t, err)
		require.Len(t, q, 1)
		require.Equal(t, "reenqueue", q[0].Operation)
		require.True(t, q[0].RunAt.Equal(runAt))

		trs, err := st.TaskTransitions(ctx, id)
		require.NoError(t, err)
		require.Len(t, trs, 3)
		require.Equal(t, "in_progress", trs[2].FromState)
		require.Equal(t, "waiting_for_retry", trs[2].ToState)
		require.True(t, trs[2].MostRecent)
		require.False(t, trs[1].MostRecent)

		_, err = st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: 999999, From: []taskertype.TaskState{taskertype.TaskStatePending},
			To: taskertype.TaskStateInProgress, Event: "start", Now: t0})
		require.True(t, errors.Is(err, taskertype.ErrNotFound), "got %v", err)
	})

	t.Run("QueueClaimLeaseAndRelease", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		a, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		p := diamond("")
		p.Queue.RunAt = t0.Add(time.Hour)
		_, err = st.TaskCreate(ctx, p)
		require.NoError(t, err)

		got, err := st.QueueClaim(ctx, &store.QueueClaimParams{Owner: "r1", Limit: 10, Now: t0, LeaseUntil: t0.Add(time.Minute)})
		require.NoError(t, err)
		require.Len(t, got, 1, "only the due entry")
		require.Equal(t, a.Task.ID, got[0].TaskID)
		again, err := st.QueueClaim(ctx, &store.QueueClaimParams{Owner: "r2", Limit: 10, Now: t0.Add(time.Second), LeaseUntil: t0.Add(time.Minute)})
		require.NoError(t, err)
		require.Empty(t, again, "leased entry is not claimed twice")
		n, err := st.QueueExtend(ctx, "r1", []int64{a.Task.ID}, t0.Add(2*time.Minute))
		require.NoError(t, err)
		require.Equal(t, 1, n)
		expired, err := st.QueueClaim(ctx, &store.QueueClaimParams{Owner: "r2", Limit: 10, Now: t0.Add(3 * time.Minute), LeaseUntil: t0.Add(4 * time.Minute)})
		require.NoError(t, err)
		require.Len(t, expired, 1, "expired lease is claimable (a dead runner's work)")
		require.Equal(t, 2, expired[0].Attempts)
		require.NoError(t, st.QueueRelease(ctx, a.Task.ID, "r2", t0.Add(5*time.Minute)))
		next, err := st.QueueNextRunAt(ctx, t0.Add(3*time.Minute))
		require.NoError(t, err)
		require.NotNil(t, next)
		require.True(t, next.Equal(t0.Add(5*time.Minute)), "next %v", next)
		// A record due by the time asked about is left out (it was
		// claimable); none after the last is nil.
		next, err = st.QueueNextRunAt(ctx, t0.Add(5*time.Minute))
		require.NoError(t, err)
		require.NotNil(t, next)
		require.True(t, next.Equal(t0.Add(time.Hour)), "next %v", next)
		next, err = st.QueueNextRunAt(ctx, t0.Add(time.Hour))
		require.NoError(t, err)
		require.Nil(t, next)
	})

	t.Run("StepsByID", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		other, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		a, d := stepID(t, res.Steps, "a"), stepID(t, res.Steps, "d")
		foreign := stepID(t, other.Steps, "b")
		got, err := st.StepsByID(ctx, res.Task.ID, []int64{d, foreign, a, 987654321})
		require.NoError(t, err)
		require.Len(t, got, 2, "another task's step and an unknown id are skipped")
		require.Equal(t, a, got[0].ID)
		require.Equal(t, "a", got[0].Name)
		require.Equal(t, d, got[1].ID)
		require.Equal(t, taskertype.StepStatePending, got[1].State)
		none, err := st.StepsByID(ctx, res.Task.ID, nil)
		require.NoError(t, err)
		require.Empty(t, none)
	})

	t.Run("QueueClaimOrderAndLimit", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		// Due records are claimed by priority, then oldest run_at first, at
		// most Limit at a time.
		var ids []int64
		for i, prio := range []int{0, 5, 0, 5} {
			p := diamond("")
			p.Priority, p.Queue.Priority, p.Queue.RunAt = prio, prio, t0.Add(-time.Duration(10-i)*time.Second)
			res, err := st.TaskCreate(ctx, p)
			require.NoError(t, err)
			ids = append(ids, res.Task.ID)
		}
		claim := func(limit int) []int64 {
			got, err := st.QueueClaim(ctx, &store.QueueClaimParams{Owner: "r", Limit: limit, Now: t0, LeaseUntil: t0.Add(time.Minute)})
			require.NoError(t, err)
			out := make([]int64, len(got))
			for i, e := range got {
				out[i] = e.TaskID
			}
			slices.Sort(out)
			return out
		}
		require.Equal(t, []int64{ids[1], ids[3]}, claim(2), "the two priority-5 records")
		require.Equal(t, []int64{ids[0]}, claim(1), "then the oldest priority-0 record")
		require.Equal(t, []int64{ids[2]}, claim(10))
		require.Empty(t, claim(10))
	})

	t.Run("StepTransitionOperatorAndRescue", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id := res.Task.ID
		cs := claim(t, st, id, "dead-runner", t0, 10)
		aID := cs[0].Step.ID
		before := t0.Add(30 * time.Second)
		moved, err := st.StepTransition(ctx, &store.StepTransitionParams{TaskID: id, StepIDs: []int64{aID},
			From: []taskertype.StepState{taskertype.StepStateInProgress}, To: taskertype.StepStateWaitingForRetry, Event: "fail_retryable",
			Reason: "lease expired", Actor: "rescuer", Now: before, Error: json.RawMessage(`{"message":"lease expired"}`),
			RequireLeaseExpiredBefore: &before})
		require.NoError(t, err)
		require.Empty(t, moved.Moved, "lease still live: no rescue")

		expired, err := st.StepLeaseExpired(ctx, t0.Add(2*time.Minute), 10)
		require.NoError(t, err)
		require.Len(t, expired, 1)
		after := t0.Add(2 * time.Minute)
		moved, err = st.StepTransition(ctx, &store.StepTransitionParams{TaskID: id, StepIDs: []int64{aID},
			From: []taskertype.StepState{taskertype.StepStateInProgress}, To: taskertype.StepStateWaitingForRetry, Event: "fail_retryable",
			Reason: "lease expired", Actor: "rescuer", Now: after, Error: json.RawMessage(`{"message":"lease expired"}`),
			RequireLeaseExpiredBefore: &after,
			Task: &store.TaskTransitionParams{TaskID: id, From: []taskertype.TaskState{taskertype.TaskStatePending}, To: taskertype.TaskStatePending,
				Event: "rescue", Now: after, Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "reenqueue", RunAt: after}}})
		require.NoError(t, err)
		require.Equal(t, []int64{aID}, moved.Moved)
		applied, err := st.StepRecord(ctx, &store.StepRecordParams{TaskID: id, Owner: "dead-runner", Now: after,
			Outcomes: []store.StepOutcome{{StepID: aID, To: taskertype.StepStateComplete, Event: "succeed"}}})
		require.NoError(t, err)
		require.Equal(t, []bool{false}, applied, "a late result of a rescued attempt is discarded")

		// Operator retry resets attempts.
		moved, err = st.StepTransition(ctx, &store.StepTransitionParams{TaskID: id, StepIDs: []int64{aID},
			From: []taskertype.StepState{taskertype.StepStateWaitingForRetry, taskertype.StepStateError}, To: taskertype.StepStatePending,
			Event: "retry", Actor: "ops@example.com", Reason: "fixed upstream", Now: after, ResetAttempts: true})
		require.NoError(t, err)
		require.Equal(t, []int64{aID}, moved.Moved)
		steps, err := st.StepList(ctx, id)
		require.NoError(t, err)
		require.Equal(t, 0, steps[0].Attempts)
		require.Equal(t, taskertype.StepStatePending, steps[0].State)
		strs, err := st.StepTransitions(ctx, id)
		require.NoError(t, err)
		last := strs[0]
		for _, tr := range strs {
			if tr.StepID == aID && tr.MostRecent {
				last = tr
			}
		}
		require.Equal(t, "ops@example.com", last.Actor)
		require.Equal(t, "fixed upstream", last.Reason)
	})

	t.Run("LeaseExtend", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		cs := claim(t, st, res.Task.ID, "w", t0, 10)
		n, _, err := st.StepLeaseExtend(ctx, "other", []int64{cs[0].Step.ID}, time.Hour)
		require.NoError(t, err)
		require.Equal(t, 0, n)
		before := time.Now()
		n, until, err := st.StepLeaseExtend(ctx, "w", []int64{cs[0].Step.ID}, time.Hour)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		// The lease runs from the database's clock (this machine's here).
		require.WithinDuration(t, before.Add(time.Hour), until, time.Minute)
		steps, err := st.StepsByID(ctx, res.Task.ID, []int64{cs[0].Step.ID})
		require.NoError(t, err)
		require.WithinDuration(t, until, *steps[0].LeaseExpiresAt, time.Millisecond)
		expired, err := st.StepLeaseExpired(ctx, time.Time{}, 10)
		require.NoError(t, err)
		require.Empty(t, expired, "by the database's clock")
		expired, err = st.StepLeaseExpired(ctx, before.Add(30*time.Minute), 10)
		require.NoError(t, err)
		require.Empty(t, expired)
		expired, err = st.StepLeaseExpired(ctx, before.Add(2*time.Hour), 10)
		require.NoError(t, err)
		require.Len(t, expired, 1)
	})

	t.Run("ClaimLeaseFromDatabaseClock", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		before := time.Now()
		cs, err := st.StepClaim(ctx, &store.StepClaimParams{TaskID: res.Task.ID, Owner: "w", Limit: 10,
			Now: t0, LeaseUntil: t0, Lease: 90 * time.Second}) // Now and LeaseUntil are ignored
		require.NoError(t, err)
		require.Len(t, cs, 1)
		stp := cs[0].Step
		require.NotNil(t, stp.LastAttemptedAt)
		require.NotNil(t, stp.LeaseExpiresAt)
		require.WithinDuration(t, before, *stp.LastAttemptedAt, time.Minute, "claimed at the database's now")
		require.Equal(t, 90*time.Second, stp.LeaseExpiresAt.Sub(*stp.LastAttemptedAt), "lease counted from the grant")
		trs, err := st.StepTransitions(ctx, res.Task.ID)
		require.NoError(t, err)
		var claimAt time.Time
		for _, tr := range trs {
			if tr.StepID == stp.ID && tr.Event == "claim" {
				claimAt = tr.CreatedAt
			}
		}
		require.True(t, claimAt.Equal(*stp.LastAttemptedAt), "the claim transition carries the claim's time: %v vs %v",
			claimAt, *stp.LastAttemptedAt)
		// The rescuer's guard by the database's clock leaves a live lease alone.
		zero := time.Time{}
		moved, err := st.StepTransition(ctx, &store.StepTransitionParams{TaskID: res.Task.ID, StepIDs: []int64{stp.ID},
			From: []taskertype.StepState{taskertype.StepStateInProgress}, To: taskertype.StepStateWaitingForRetry,
			Event: "fail_retryable", Reason: "lease expired", Actor: "rescuer", Now: time.Now(),
			Error: json.RawMessage(`{"kind":"lease_expired"}`), RequireLeaseExpiredBefore: &zero})
		require.NoError(t, err)
		require.Empty(t, moved.Moved)
	})

	t.Run("SlowClaimRenewsItsLease", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		// A lease so short that any claim transaction outlasts a tenth of
		// it: the lease restarts when the claim has done its work, not
		// when its statement began.
		cs, err := st.StepClaim(ctx, &store.StepClaimParams{TaskID: res.Task.ID, Owner: "w", Limit: 10, Lease: time.Microsecond})
		require.NoError(t, err)
		require.Len(t, cs, 1)
		steps, err := st.StepsByID(ctx, res.Task.ID, []int64{cs[0].Step.ID})
		require.NoError(t, err)
		granted, until := *steps[0].LastAttemptedAt, *steps[0].LeaseExpiresAt
		require.True(t, until.After(granted.Add(time.Microsecond)), "lease %v renewed after the grant %v", until, granted)
		require.WithinDuration(t, until, *cs[0].Step.LeaseExpiresAt, time.Millisecond, "the caller sees the renewed lease")
	})

	t.Run("LateSuccessOfRescuedAttempt", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id := res.Task.ID
		cs := claim(t, st, id, "w", t0, 10)
		aID := cs[0].Step.ID
		require.Equal(t, 1, cs[0].Step.Attempts)
		rescue := func() {
			t.Helper()
			after := t0.Add(2 * time.Minute)
			moved, err := st.StepTransition(ctx, &store.StepTransitionParams{TaskID: id, StepIDs: []int64{aID},
				From: []taskertype.StepState{taskertype.StepStateInProgress}, To: taskertype.StepStateWaitingForRetry,
				Event: "fail_retryable", Reason: "lease expired", Actor: "rescuer", Now: after,
				Error: json.RawMessage(`{"message":"lease expired","kind":"lease_expired"}`), RequireLeaseExpiredBefore: &after})
			require.NoError(t, err)
			require.Equal(t, []int64{aID}, moved.Moved)
		}
		record := func(owner string, o store.StepOutcome) bool {
			t.Helper()
			o.StepID = aID
			applied, err := st.StepRecord(ctx, &store.StepRecordParams{TaskID: id, Owner: owner, Now: t0.Add(3 * time.Minute),
				Outcomes: []store.StepOutcome{o}})
			require.NoError(t, err)
			return applied[0]
		}
		ok := func(attempt int) store.StepOutcome {
			return store.StepOutcome{To: taskertype.StepStateComplete, Event: "succeed", Results: json.RawMessage(`{"n":1}`),
				Attempt: attempt}
		}
		rescue()
		fail := store.StepOutcome{To: taskertype.StepStateWaitingForRetry, Event: "fail_retryable",
			Error: json.RawMessage(`{"message":"boom","kind":"retryable"}`), Attempt: 1}
		require.False(t, record("w", fail), "a late failure: the rescue already counted the attempt")
		require.False(t, record("w", ok(2)), "a success of another attempt")
		require.False(t, record("w", ok(0)), "a success that does not say its attempt")
		require.True(t, record("w", ok(1)), "the late success of the rescued attempt, not claimed again")
		require.False(t, record("w", ok(1)), "applied once")
		steps, err := st.StepsByID(ctx, id, []int64{aID})
		require.NoError(t, err)
		require.Equal(t, taskertype.StepStateComplete, steps[0].State)
		require.JSONEq(t, `{"n":1}`, string(steps[0].Results))
		require.Empty(t, steps[0].Error)
		trs, err := st.StepTransitions(ctx, id)
		require.NoError(t, err)
		last := trs[len(trs)-1]
		for _, tr := range trs {
			if tr.StepID == aID && tr.MostRecent {
				last = tr
			}
		}
		require.Equal(t, string(taskertype.StepStateWaitingForRetry), last.FromState)
		require.Equal(t, string(taskertype.StepStateComplete), last.ToState)

		// Claimed again after the rescue: the old attempt's success is
		// discarded, the new one's taken.
		res2, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id = res2.Task.ID
		cs = claim(t, st, id, "w", t0, 10)
		aID = cs[0].Step.ID
		rescue()
		again := claim(t, st, id, "w", t0.Add(time.Hour), 10)
		require.Len(t, again, 1)
		require.Equal(t, 2, again[0].Step.Attempts)
		require.False(t, record("w", ok(1)), "attempt 2 has started: attempt 1's result is stale")
		require.True(t, record("w", ok(2)))
	})

	t.Run("TaskListFiltersAndPages", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		var ids []int64
		for i := 0; i < 5; i++ {
			p := diamond("")
			p.Now = t0.Add(time.Duration(i) * time.Hour)
			if i%2 == 1 {
				p.Name = "other"
			}
			res, err := st.TaskCreate(ctx, p)
			require.NoError(t, err)
			ids = append(ids, res.Task.ID)
		}
		page, err := st.TaskList(ctx, &store.TaskListParams{Limit: 2})
		require.NoError(t, err)
		require.Equal(t, []int64{ids[4], ids[3]}, []int64{page[0].ID, page[1].ID})
		page, err = st.TaskList(ctx, &store.TaskListParams{Limit: 2, AfterID: ids[3]})
		require.NoError(t, err)
		require.Equal(t, []int64{ids[2], ids[1]}, []int64{page[0].ID, page[1].ID})
		named, err := st.TaskList(ctx, &store.TaskListParams{Name: "other", Namespace: "ns"})
		require.NoError(t, err)
		require.Len(t, named, 2)
		after := t0.Add(90 * time.Minute)
		before := t0.Add(210 * time.Minute)
		window, err := st.TaskList(ctx, &store.TaskListParams{CreatedAfter: &after, CreatedBefore: &before,
			States: []taskertype.TaskState{taskertype.TaskStatePending}})
		require.NoError(t, err)
		require.Len(t, window, 2)
		none, err := st.TaskList(ctx, &store.TaskListParams{States: []taskertype.TaskState{taskertype.TaskStateComplete}})
		require.NoError(t, err)
		require.Empty(t, none)

		// A task that finished and was retried is listed as unfinished again
		// (listing unfinished states goes through completed_at).
		list := func(states ...taskertype.TaskState) []int64 {
			t.Helper()
			got, err := st.TaskList(ctx, &store.TaskListParams{States: states})
			require.NoError(t, err)
			out := []int64{}
			for _, task := range got {
				out = append(out, task.ID)
			}
			return out
		}
		move := func(from, to taskertype.TaskState) {
			t.Helper()
			tr, err := st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: ids[0],
				From: []taskertype.TaskState{from}, To: to, Event: "test", Now: t0})
			require.NoError(t, err)
			require.True(t, tr.Changed)
		}
		move(taskertype.TaskStatePending, taskertype.TaskStateInProgress)
		require.Equal(t, []int64{ids[0]}, list(taskertype.TaskStateInProgress))
		move(taskertype.TaskStateInProgress, taskertype.TaskStateError)
		require.Empty(t, list(taskertype.TaskStateInProgress))
		require.Equal(t, []int64{ids[0]}, list(taskertype.TaskStateError))
		require.Equal(t, []int64{ids[0]}, list(taskertype.TaskStateError, taskertype.TaskStatePending)[4:])
		move(taskertype.TaskStateError, taskertype.TaskStateInProgress)
		require.Equal(t, []int64{ids[0]}, list(taskertype.TaskStateInProgress))
		require.Empty(t, list(taskertype.TaskStateError))
		require.Len(t, list(taskertype.TaskStatePending, taskertype.TaskStateInProgress), 5)
	})

	t.Run("ConcurrentTransitionsKeepHistoryConsistent", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id := res.Task.ID
		aID := stepID(t, res.Steps, "a")
		both := []taskertype.TaskState{taskertype.TaskStatePending, taskertype.TaskStateInProgress}
		stepBoth := []taskertype.StepState{taskertype.StepStatePending, taskertype.StepStateWaitingForRetry}
		const workers, rounds = 6, 15
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < rounds; i++ {
					to := taskertype.TaskStateInProgress
					stepTo := taskertype.StepStateWaitingForRetry
					if (w+i)%2 == 0 {
						to, stepTo = taskertype.TaskStatePending, taskertype.StepStatePending
					}
					// Every transition's guard admits the state any other
					// left behind, so all of them must apply.
					tr, err := st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: id, From: both, To: to,
						Event: "flip", Actor: fmt.Sprintf("w%d", w), Meta: json.RawMessage(`{"i":1}`), Now: t0})
					if err != nil {
						t.Errorf("task transition: %v", err)
						return
					}
					if !tr.Changed {
						t.Errorf("task transition not applied")
					}
					moved, err := st.StepTransition(ctx, &store.StepTransitionParams{TaskID: id, StepIDs: []int64{aID},
						From: stepBoth, To: stepTo, Event: "flip", Actor: fmt.Sprintf("w%d", w), Now: t0})
					if err != nil {
						t.Errorf("step transition: %v", err)
						return
					}
					if len(moved.Moved) != 1 {
						t.Errorf("step transition not applied")
					}
				}
			}()
		}
		wg.Wait()
		check := func(trs []*taskertype.Transition) {
			t.Helper()
			require.Len(t, trs, workers*rounds+1)
			for i, tr := range trs {
				require.Equal(t, i+1, tr.SortKey)
				require.Equal(t, i == len(trs)-1, tr.MostRecent, "transition %d", i+1)
				if i > 0 {
					require.Equal(t, trs[i-1].ToState, tr.FromState, "transition %d", i+1)
				}
			}
		}
		trs, err := st.TaskTransitions(ctx, id)
		require.NoError(t, err)
		check(trs)
		task, err := st.TaskGet(ctx, id)
		require.NoError(t, err)
		require.Equal(t, string(task.State), trs[len(trs)-1].ToState)
		require.JSONEq(t, `{"i":1}`, string(trs[len(trs)-1].Metadata))
		strs, err := st.StepTransitions(ctx, id)
		require.NoError(t, err)
		var ofA []*taskertype.Transition
		for _, tr := range strs {
			if tr.StepID == aID {
				ofA = append(ofA, tr)
			}
		}
		check(ofA)
	})

	t.Run("ConcurrentFinalizersNeverBothLeave", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		// Two coordinators each run one of a task's two steps and record it
		// with the finalizer at the same moment. Whatever the interleaving,
		// exactly one of them sees both steps complete and completes the
		// task; the other sees the first's step running (or done) and
		// leaves it. Both leaving would strand the task in progress.
		for round := range 25 {
			p := &store.TaskCreateParams{Namespace: "ns", Name: "pair", Version: "1.0.0", Context: json.RawMessage(`{}`),
				MaxParallelSteps: 2, Now: t0, Steps: []store.StepSpec{
					{Name: "a", HandlerClass: "h", MaxAttempts: 1}, {Name: "b", HandlerClass: "h", MaxAttempts: 1}}}
			res, err := st.TaskCreate(ctx, p)
			require.NoError(t, err)
			id := res.Task.ID
			_, err = st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: id, From: []taskertype.TaskState{
				taskertype.TaskStatePending}, To: taskertype.TaskStateInProgress, Event: "start", Actor: "t", Now: t0})
			require.NoError(t, err)
			var claims [2][]*store.ClaimedStep
			for i, owner := range []string{"r1", "r2"} {
				claims[i], err = st.StepClaim(ctx, &store.StepClaimParams{TaskID: id, Owner: owner, Limit: 1, Now: t0,
					LeaseUntil: t0.Add(time.Minute)})
				require.NoError(t, err)
				require.Len(t, claims[i], 1)
			}
			var completed atomic.Int32
			var wg sync.WaitGroup
			for i, owner := range []string{"r1", "r2"} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, tr, err := recordFinalize(ctx, st, &store.StepRecordParams{TaskID: id, Owner: owner, Now: t0,
						Outcomes: []store.StepOutcome{{StepID: claims[i][0].Step.ID, To: taskertype.StepStateComplete,
							Event: "succeed", Results: json.RawMessage(`{}`)}}},
						func(sum *store.TaskSummary) *store.TaskTransitionParams {
							if sum.Complete != sum.Total {
								return nil // running elsewhere
							}
							return &store.TaskTransitionParams{TaskID: id, From: []taskertype.TaskState{
								taskertype.TaskStateInProgress}, To: taskertype.TaskStateComplete, Event: "complete",
								Actor: owner, Now: t0, Queue: store.QueueOp{Kind: store.QueueDelete}}
						})
					if !assert.NoError(t, err) {
						return
					}
					if tr != nil && tr.Changed {
						completed.Add(1)
					}
				}()
			}
			wg.Wait()
			task, err := st.TaskGet(ctx, id)
			require.NoError(t, err)
			require.Equal(t, taskertype.TaskStateComplete, task.State, "round %d", round)
			require.Equal(t, int32(1), completed.Load(), "round %d", round)
		}
	})

	t.Run("ConcurrentClaimsNeverOverlap", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		p := &store.TaskCreateParams{Namespace: "ns", Name: "wide", Version: "1.0.0", Context: json.RawMessage(`{}`),
			MaxParallelSteps: 100, Now: t0}
		for i := 0; i < 200; i++ {
			p.Steps = append(p.Steps, store.StepSpec{Name: fmt.Sprintf("s%03d", i), HandlerClass: "h", Retryable: true, MaxAttempts: 1})
		}
		res, err := st.TaskCreate(ctx, p)
		require.NoError(t, err)
		var mu sync.Mutex
		seen := map[int64]string{}
		var wg sync.WaitGroup
		for w := 0; w < 6; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				owner := fmt.Sprintf("w%d", w)
				for {
					cs, err := st.StepClaim(ctx, &store.StepClaimParams{TaskID: res.Task.ID, Owner: owner, Limit: 7, Now: t0, LeaseUntil: t0.Add(time.Minute)})
					if err != nil {
						t.Errorf("claim: %v", err)
						return
					}
					if len(cs) == 0 {
						return
					}
					mu.Lock()
					for _, c := range cs {
						if prev, dup := seen[c.Step.ID]; dup {
							t.Errorf("step %d claimed by %s and %s", c.Step.ID, prev, owner)
						}
						seen[c.Step.ID] = owner
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		require.Len(t, seen, 200)
	})
}
