package engine

import (
	"cmp"
	"context"
	"errors"
	"sync"

	"github.com/tasker-systems/tasker/internal/store"
)

// maxCreateRound caps the tasks one coalesced round writes.
const maxCreateRound = BatchChunkDefault

// createRoundsDefault is how many rounds may be written at once: two, so
// that one round's commit (its WAL flush, on a durable database) overlaps
// the next round's statements, as the store's claim and record batches do.
const createRoundsDefault = 2

// createRequest is one InitializeTask call waiting for its round.
type createRequest struct {
	ctx  context.Context
	p    *store.TaskCreateParams
	res  *store.TaskCreateResult
	err  error
	done chan struct{}
}

// creates coalesces concurrent InitializeTask calls: every call that
// arrives while rounds are being written joins the next round, and a round
// is one store call (one transaction) for all of its calls. Up to rounds
// rounds are written at once (two by default: one commits while the next
// one's statements run); a writer starts its next round as soon as its
// previous one ends, and a call that finds a writer free writes its own
// round at once, on its own goroutine: a lone caller waits for nothing but
// its own transaction. Each call gets its own result; when a
// round's store call fails, its calls are written again one by one, so that
// one failing request fails alone.
type creates struct {
	many func(ctx context.Context, ps []*store.TaskCreateParams) ([]*store.TaskCreateResult, error)
	one  func(ctx context.Context, p *store.TaskCreateParams) (*store.TaskCreateResult, error)

	// rounds is how many rounds may be written at once (0: createRoundsDefault).
	rounds int

	mu      sync.Mutex
	pending []*createRequest
	writers int // rounds being written (or about to be)
}

// createOne writes one task, coalesced with concurrent calls.
func (e *Engine) createOne(ctx context.Context, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	return e.creates.do(ctx, p)
}

// do queues p for the next round and waits for its result.
func (c *creates) do(ctx context.Context, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	r := &createRequest{ctx: ctx, p: p, done: make(chan struct{})}
	c.queue(r)
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		// The round may still write the task: like a cancelled commit, the
		// outcome is unknown to this caller.
		return nil, ctx.Err()
	}
}

// doMany queues every params of ps, together and in order, for the next
// rounds and waits for all of their results: a small InitializeTasks call
// shares its round (and its commit) with the calls of other goroutines.
// Each params gets its own result or error; when ctx ends first, the
// outcome of those not answered yet is unknown and the error is ctx's.
func (c *creates) doMany(ctx context.Context, ps []*store.TaskCreateParams) ([]*store.TaskCreateResult, []error, error) {
	rs := make([]*createRequest, len(ps))
	for i, p := range ps {
		rs[i] = &createRequest{ctx: ctx, p: p, done: make(chan struct{})}
	}
	c.queue(rs...)
	res := make([]*store.TaskCreateResult, len(ps))
	errs := make([]error, len(ps))
	for i, r := range rs {
		select {
		case <-r.done:
			res[i], errs[i] = r.res, r.err
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	return res, errs, nil
}

// queue adds rs to the pending calls. The caller that finds a writer free
// writes the next round itself; if calls queued up meanwhile, a goroutine
// carries on with them.
func (c *creates) queue(rs ...*createRequest) {
	c.mu.Lock()
	c.pending = append(c.pending, rs...)
	lead := c.writers < cmp.Or(c.rounds, createRoundsDefault)
	if lead {
		c.writers++
	}
	c.mu.Unlock()
	if lead {
		c.round(c.take())
		if c.more() {
			go c.loop()
		}
	}
}

// take removes up to maxCreateRound pending calls.
func (c *creates) take() []*createRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := min(len(c.pending), maxCreateRound)
	batch := c.pending[:n:n]
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		c.pending = nil
	}
	return batch
}

// more reports whether calls are pending, and otherwise ends this writer
// (under the same lock, so a call arriving after it leads a round).
func (c *creates) more() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) > 0 {
		return true
	}
	c.writers--
	return false
}

// loop writes rounds until no call is pending.
func (c *creates) loop() {
	for {
		c.round(c.take())
		if !c.more() {
			return
		}
	}
}

// round writes a batch of calls with one store call, skipping calls whose
// context has ended, and signals each.
func (c *creates) round(batch []*createRequest) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// The round outlives any one caller's context: it writes for all.
	ctx := context.WithoutCancel(live[0].ctx)
	ps := make([]*store.TaskCreateParams, len(live))
	for i, r := range live {
		ps[i] = r.p
	}
	res, err := c.many(ctx, ps)
	if err == nil && len(res) != len(live) {
		err = errResultCount
	}
	for i, r := range live {
		switch {
		case err == nil:
			r.res = res[i]
		case len(live) == 1:
			r.err = err
		default:
			r.res, r.err = c.one(context.WithoutCancel(r.ctx), r.p)
		}
		close(r.done)
	}
}

// errResultCount reports a store answering a batch with the wrong number
// of results.
var errResultCount = errors.New("create tasks: the store returned a different number of results than tasks")
