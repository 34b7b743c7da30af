package engine

import (
	"context"
	"errors"
	"sync"

	"github.com/tasker-systems/tasker/internal/store"
)

// Cross-task batching, an engine service. Every coordinator of a process
// records its steps' results, finalizes its task and claims steps through
// the same few statements: the cost of a statement (a round trip,
// parse/bind/execute, a commit) was most of the cost of a short task. A
// batcher gathers the requests that arrive while earlier batches are
// running and executes them together, in one store transaction
// (store.Store.Transact) whose bulk operations (store.Tx) write each kind
// of row of the whole batch with one statement, whatever the number of
// tasks in it. An idle engine runs each request alone as soon as it
// arrives, so batching adds no waiting; a busy one batches as much as is
// queued. Each request keeps its own result, exactly as when run alone.
//
// There are no goroutines of its own to start or stop: the caller whose
// request finds fewer than batchWorkers batches running runs batches
// itself (its own and whatever else is queued) until its request is done,
// and hands what is still queued to a goroutine that drains it.

// errBatcherClosed is returned for requests made after the batcher closed.
var errBatcherClosed = errors.New("engine: batcher closed")

// batchWorkers is how many batches of one kind run at once: enough to
// keep a commit's flush and the next batch's statements overlapping.
const batchWorkers = 2

// batchMax caps the requests in one batch.
const batchMax = 256

// batchCall is what every batched request carries: the caller's context,
// its error (set by the batch, or by the batch's transaction for this
// request alone) and the signal that its results are set.
type batchCall struct {
	ctx  context.Context
	err  error
	done chan struct{}
}

func (c *batchCall) call() *batchCall { return c }

// batchRequest is a batched request's type (*recordReq, *claimReq).
type batchRequest interface{ call() *batchCall }

// batcher merges concurrent requests into batches, each run in one
// transaction of st by exec. exec sets every request's results afresh
// (and may set a request's own err) each time it runs: a transaction is
// retried after a deadlock, and a failed batch is run again one request at
// a time.
type batcher[R batchRequest] struct {
	st      store.Store
	exec    func(ctx context.Context, tx store.Tx, batch []R) error
	workers int
	max     int

	mu      sync.Mutex
	queue   []R
	running int  // goroutines running batches
	closed  bool // no new requests
	idle    *sync.Cond
}

func newBatcher[R batchRequest](st store.Store, exec func(ctx context.Context, tx store.Tx, batch []R) error) *batcher[R] {
	b := &batcher[R]{st: st, exec: exec, workers: batchWorkers, max: batchMax}
	b.idle = sync.NewCond(&b.mu)
	return b
}

// do runs r in the next batch and waits for it; the error is r's own or its
// batch's. A request whose ctx has ended when its batch starts is not run
// (ctx.Err()); once its batch has started, the request waits for the
// batch's commit, which other requests share: a batch of one runs under
// its request's ctx, a batch of several under none of them (one caller
// going away must not undo the others' writes). It fails without running
// r after close.
func (b *batcher[R]) do(ctx context.Context, r R) error {
	c := r.call()
	c.ctx, c.err, c.done = ctx, nil, make(chan struct{})
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errBatcherClosed
	}
	b.queue = append(b.queue, r)
	lead := b.running < b.workers
	if lead {
		b.running++
	}
	b.mu.Unlock()
	if lead {
		b.drain(c)
	}
	<-c.done
	return c.err
}

// drain runs queued batches until the queue is empty or, with own set,
// until own is done; then it hands what is still queued to a new
// goroutine, so that the caller goes back to its work.
func (b *batcher[R]) drain(own *batchCall) {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.running--
			b.idle.Broadcast()
			b.mu.Unlock()
			return
		}
		if own != nil && isDone(own) {
			b.mu.Unlock()
			go b.drain(nil)
			return
		}
		n := min(len(b.queue), b.max)
		batch := make([]R, n)
		copy(batch, b.queue)
		rest := copy(b.queue, b.queue[n:])
		clear(b.queue[rest:])
		b.queue = b.queue[:rest]
		b.mu.Unlock()
		b.run(batch)
	}
}

func isDone(c *batchCall) bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// run executes a batch and signals its requests. A batch that fails is run
// again one request at a time: one request's input may have failed the
// whole transaction, and only that request should see the error.
func (b *batcher[R]) run(batch []R) {
	live := batch[:0:0]
	for _, r := range batch {
		if c := r.call(); c.ctx.Err() != nil {
			c.err = c.ctx.Err()
			close(c.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx := context.Background()
	if len(live) == 1 {
		ctx = live[0].call().ctx
	}
	err := b.st.Transact(ctx, func(tx store.Tx) error { return b.exec(ctx, tx, live) })
	if err != nil && len(live) > 1 {
		for _, r := range live {
			b.run([]R{r})
		}
		return
	}
	for _, r := range live {
		c := r.call()
		if err != nil {
			c.err = err
		}
		close(c.done)
	}
}

// close refuses new requests and waits for the batches running (and the
// requests already queued) to finish. It may be called more than once.
func (b *batcher[R]) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for b.running > 0 {
		b.idle.Wait()
	}
}
