package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

const createsTemplate = `
name: one
namespace_name: bulk
version: 1.0.0
schema: {type: object, required: [n], properties: {n: {type: integer}}}
step_templates:
  - name: a
    handler_class: Noop
  - name: b
    depends_on_step: a
    handler_class: Noop
`

// eachStore runs fn against an engine on a fresh SQLite file and on a
// fresh PostgreSQL schema.
func eachStore(t *testing.T, fn func(t *testing.T, st store.Store, e *Engine)) {
	for name, open := range map[string]func(testing.TB) store.Store{
		"sqlite":   func(tb testing.TB) store.Store { return testdb.SQLite(tb) },
		"postgres": func(tb testing.TB) store.Store { return testdb.Postgres(tb) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			reg := template.NewRegistry()
			tmpl, errs := template.Parse("one.yaml", []byte(createsTemplate), "")
			require.Empty(t, errs)
			require.NoError(t, reg.Add(tmpl))
			e, err := New(Config{Store: st, Templates: reg, EnqueueHandler: EventEnqueueHandler{}})
			require.NoError(t, err)
			fn(t, st, e)
		})
	}
}

func createsReq(n int, key string) *TaskRequest {
	return &TaskRequest{Namespace: "bulk", Name: "one", Context: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)),
		IdempotencyKey: key}
}

// errPoison is the store failure injected for requests with reason "poison".
var errPoison = errors.New("injected store failure")

// roundRecorder writes rounds with the real store's TaskCreateMany, records their sizes, and fails a
// whole round, and the request alone, when a request's reason is "poison".
type roundRecorder struct {
	st     store.Store
	mu     sync.Mutex
	rounds []int
}

func (r *roundRecorder) many(ctx context.Context, ps []*store.TaskCreateParams) ([]*store.TaskCreateResult, error) {
	r.mu.Lock()
	r.rounds = append(r.rounds, len(ps))
	r.mu.Unlock()
	for _, p := range ps {
		if p.Reason == "poison" {
			return nil, errPoison
		}
	}
	return r.st.TaskCreateMany(ctx, ps)
}

func (r *roundRecorder) one(ctx context.Context, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	if p.Reason == "poison" {
		return nil, errPoison
	}
	return r.st.TaskCreate(ctx, p)
}

// TestCoalescedCreates: InitializeTask from 48 goroutines at once. Calls
// are written in shared rounds (some round holds more than one call), every
// task is created once, callers of one idempotency key all get one task
// (created for exactly one of them), and a request whose write fails gets
// its error alone while the others of its round are written.
func TestCoalescedCreates(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store, e *Engine) {
		rec := &roundRecorder{st: st}
		e.creates = &creates{many: rec.many, one: rec.one}
		const goroutines, each, keys = 48, 8, 10
		type outcome struct {
			key     string
			id      int64
			created bool
			err     error
			poison  bool
		}
		out := make([][]outcome, goroutines)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := range each {
					req := createsReq(g*each+i, "")
					o := outcome{}
					switch {
					case i == 0:
						o.key = fmt.Sprintf("key-%d", g%keys)
						req.IdempotencyKey = o.key
					case i == 3 && g%7 == 0:
						req.Reason, o.poison = "poison", true
					}
					task, created, err := e.InitializeTask(context.Background(), req)
					o.created, o.err = created, err
					if task != nil {
						o.id = task.ID
					}
					out[g] = append(out[g], o)
				}
			}()
		}
		close(start)
		wg.Wait()

		byKey := map[string]map[int64]bool{}
		createdPerKey := map[string]int{}
		ids := map[int64]bool{}
		poisoned, plain := 0, 0
		for _, os := range out {
			for _, o := range os {
				switch {
				case o.poison:
					require.ErrorIs(t, o.err, errPoison)
					poisoned++
				case o.key != "":
					require.NoError(t, o.err)
					if byKey[o.key] == nil {
						byKey[o.key] = map[int64]bool{}
					}
					byKey[o.key][o.id] = true
					if o.created {
						createdPerKey[o.key]++
					}
					ids[o.id] = true
				default:
					require.NoError(t, o.err)
					require.True(t, o.created)
					require.False(t, ids[o.id], "task %d returned twice", o.id)
					ids[o.id] = true
					plain++
				}
			}
		}
		require.Len(t, byKey, keys)
		for k, set := range byKey {
			require.Len(t, set, 1, "key %s resolved to one task", k)
			require.Equal(t, 1, createdPerKey[k], "key %s created once", k)
		}
		require.Equal(t, 7, poisoned)
		all, err := st.TaskList(context.Background(), &store.TaskListParams{Limit: 10000})
		require.NoError(t, err)
		require.Len(t, all, plain+keys, "every task written once")
		require.Len(t, ids, plain+keys)
		maxRound := 0
		for _, n := range rec.rounds {
			maxRound = max(maxRound, n)
		}
		require.Greater(t, maxRound, 1, "concurrent calls share rounds (rounds: %v)", rec.rounds)
	})
}

// TestCoalescedCreatesLone: calls one after the other each get a round of
// their own, written at once (no waiting for company).
func TestCoalescedCreatesLone(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store, e *Engine) {
		rec := &roundRecorder{st: st}
		e.creates = &creates{many: rec.many, one: rec.one}
		for i := range 5 {
			_, created, err := e.InitializeTask(context.Background(), createsReq(i, ""))
			require.NoError(t, err)
			require.True(t, created)
		}
		require.Equal(t, []int{1, 1, 1, 1, 1}, rec.rounds)
		_, _, err := e.InitializeTask(context.Background(), &TaskRequest{Namespace: "bulk", Name: "one",
			Context: json.RawMessage(`{"n":1}`), Reason: "poison"})
		require.ErrorIs(t, err, errPoison)
	})
}

// failingStore fails every batch write after the first failAfter ones.
type failingStore struct {
	store.Store
	failAfter int32
	calls     atomic.Int32
}

var errDown = errors.New("injected: database went away")

func (s *failingStore) TaskCreateMany(ctx context.Context, ps []*store.TaskCreateParams) ([]*store.TaskCreateResult, error) {
	if s.calls.Add(1) > s.failAfter {
		return nil, errDown
	}
	return s.Store.TaskCreateMany(ctx, ps)
}

// TestInitializeTasksChunks: a batch larger than a chunk is written chunk
// by chunk; when the store fails at the second chunk, the first chunk's
// tasks exist and the later valid requests say they were not written; when
// it fails at the first, nothing is returned but the error.
func TestInitializeTasksChunks(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store, _ *Engine) {
		fs := &failingStore{Store: st, failAfter: 1}
		e, err := New(Config{Store: fs, Templates: mustRegistry(t), EnqueueHandler: EventEnqueueHandler{}})
		require.NoError(t, err)
		reqs := []*TaskRequest{createsReq(0, ""), {Namespace: "bulk", Name: "one"}, createsReq(2, ""), createsReq(3, ""),
			createsReq(4, ""), createsReq(5, "")}
		res, err := e.initializeTasks(context.Background(), reqs, 2)
		require.NoError(t, err)
		require.True(t, res[0].Created)
		require.ErrorIs(t, res[1].Err, taskertype.ErrInvalidContext)
		require.True(t, res[2].Created)
		for _, i := range []int{3, 4, 5} {
			require.ErrorIs(t, res[i].Err, taskertype.ErrNotAttempted, "request %d", i)
			require.ErrorIs(t, res[i].Err, errDown)
			var be *taskertype.BatchItemError
			require.ErrorAs(t, res[i].Err, &be)
			require.Equal(t, i, be.Index)
		}
		all, err := st.TaskList(context.Background(), &store.TaskListParams{})
		require.NoError(t, err)
		require.Len(t, all, 2)

		res, err = e.initializeTasks(context.Background(), reqs, 2)
		require.ErrorIs(t, err, errDown)
		require.Nil(t, res)
	})
}

func mustRegistry(t *testing.T) *template.Registry {
	t.Helper()
	reg := template.NewRegistry()
	tmpl, errs := template.Parse("one.yaml", []byte(createsTemplate), "")
	require.Empty(t, errs)
	require.NoError(t, reg.Add(tmpl))
	return reg
}

// TestCoalescedSmallBatches: small InitializeTasks calls from 16 goroutines
// at once share the rounds of the coalescer with each other (some round
// holds the tasks of more than one call); every result is its request's,
// in order, a request whose write fails gets its own BatchItemError (the
// store's failure, with the request's index) while the others are
// written, a batch whose every request fails returns the error alone, and
// a batch larger than coalesceBatchMax is written by its own store call.
func TestCoalescedSmallBatches(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store, e *Engine) {
		rec := &roundRecorder{st: st}
		e.creates = &creates{many: rec.many, one: rec.one}
		const goroutines, calls, per = 16, 6, 4
		var wg sync.WaitGroup
		start := make(chan struct{})
		var mu sync.Mutex
		written := 0
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for c := range calls {
					reqs := make([]*TaskRequest, per)
					for i := range reqs {
						reqs[i] = createsReq((g*calls+c)*per+i, "")
					}
					poison := -1
					if (g+c)%5 == 0 {
						poison = (g + c) % per
						reqs[poison].Reason = "poison"
					}
					res, err := e.InitializeTasks(context.Background(), reqs)
					assert.NoError(t, err)
					if !assert.Len(t, res, per) {
						return
					}
					for i, r := range res {
						if i == poison {
							var be *taskertype.BatchItemError
							assert.ErrorAs(t, r.Err, &be)
							assert.ErrorIs(t, r.Err, errPoison)
							if be != nil {
								assert.Equal(t, i, be.Index)
							}
							continue
						}
						if assert.NoError(t, r.Err) && assert.True(t, r.Created) {
							assert.JSONEq(t, string(reqs[i].Context), string(r.Task.Context), "result %d is its request's", i)
							mu.Lock()
							written++
							mu.Unlock()
						}
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		all, err := st.TaskList(context.Background(), &store.TaskListParams{Limit: 10000})
		require.NoError(t, err)
		require.Len(t, all, written, "every task written once")
		maxRound := 0
		for _, n := range rec.rounds {
			maxRound = max(maxRound, n)
		}
		require.Greater(t, maxRound, per, "small batches share rounds (rounds: %v)", rec.rounds)

		poisoned := []*TaskRequest{createsReq(1, ""), createsReq(2, "")}
		for _, r := range poisoned {
			r.Reason = "poison"
		}
		res, err := e.InitializeTasks(context.Background(), poisoned)
		require.ErrorIs(t, err, errPoison, "every request failed: the error alone")
		require.Nil(t, res)

		rounds := len(rec.rounds)
		big := make([]*TaskRequest, coalesceBatchMax+1)
		for i := range big {
			big[i] = createsReq(i, "")
		}
		res, err = e.InitializeTasks(context.Background(), big)
		require.NoError(t, err)
		require.Len(t, res, len(big))
		require.Len(t, rec.rounds, rounds, "a large batch is written by its own store call, not in rounds")
	})
}
