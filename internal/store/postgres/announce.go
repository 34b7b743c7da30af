package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker/internal/store"
)

// announceWindow is the least time between two notifications a store
// sends: the enqueues committed within one window share a notification.
const announceWindow = 5 * time.Millisecond

// announceTimeout bounds one notification (a runner that misses it finds
// the work at its poll floor).
const announceTimeout = 5 * time.Second

// announcer sends the queue's notification (NOTIFY tasker_queue, the
// schema as payload: what Listen waits for) after commits, debounced: the
// first enqueue after a quiet window is announced at once, those that
// follow within announceWindow of a notification share the next one, sent
// when the window ends. Until migration 0019 a trigger on the queue table
// notified inside every transaction that made a record available, so every
// creating commit took PostgreSQL's global notification lock (held from the
// notification queue's write to the end of the commit, serializing the
// commits of concurrent creators); with one notification per window from
// each process, at most one transaction of a process at a time takes it.
type announcer struct {
	pool *pgxpool.Pool

	mu      sync.Mutex
	pending bool // an enqueue since the last notification was sent
	running bool // the sending goroutine is live
	closed  bool
	wg      sync.WaitGroup
}

// announce says that an enqueue was committed. It does not block.
func (a *announcer) announce() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	if a.running {
		a.pending = true
		return
	}
	a.running = true
	a.wg.Add(1)
	go a.loop()
}

func (a *announcer) loop() {
	defer a.wg.Done()
	for {
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), announceTimeout)
		_, _ = a.pool.Exec(ctx, `SELECT pg_notify('tasker_queue', current_schema())`)
		cancel()
		a.mu.Lock()
		closed := a.closed
		a.mu.Unlock()
		if !closed {
			time.Sleep(announceWindow - time.Since(sent))
		}
		a.mu.Lock()
		if !a.pending {
			a.running = false
			a.mu.Unlock()
			return
		}
		a.pending = false
		a.mu.Unlock()
	}
}

// close sends what is still pending and stops announcing.
func (a *announcer) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.wg.Wait()
}

// AnnounceQueue implements store.QueueAnnouncer.
func (s *Store) AnnounceQueue() { s.announce.announce() }

// TaskCreate implements store.Store, and announces the new task's enqueue
// record after its commit.
func (s *Store) TaskCreate(ctx context.Context, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	res, err := s.Core.TaskCreate(ctx, p)
	if err == nil && res.Created && p.Queue.Kind == store.QueueUpsert {
		s.announce.announce()
	}
	return res, err
}

// TaskCreateMany implements store.Store, and announces the new tasks'
// enqueue records after their commit.
func (s *Store) TaskCreateMany(ctx context.Context, ps []*store.TaskCreateParams) ([]*store.TaskCreateResult, error) {
	res, err := s.Core.TaskCreateMany(ctx, ps)
	if err == nil {
		for i, r := range res {
			if r != nil && r.Created && ps[i].Queue.Kind == store.QueueUpsert {
				s.announce.announce()
				break
			}
		}
	}
	return res, err
}

// QueueRelease implements store.Store, and announces the released record.
func (s *Store) QueueRelease(ctx context.Context, taskID int64, owner string, runAt time.Time) error {
	err := s.Core.QueueRelease(ctx, taskID, owner, runAt)
	if err == nil {
		s.announce.announce()
	}
	return err
}
