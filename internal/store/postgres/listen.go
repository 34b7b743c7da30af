package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Listen implements store.Notifier on PostgreSQL with LISTEN/NOTIFY. It
// reconnects with backoff when the connection drops.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	if s.listenErr != nil {
		return nil, s.listenErr
	}
	ch := make(chan struct{}, 1)
	go s.listenLoop(ctx, s.listen, ch)
	return ch, nil
}

func (s *Store) listenLoop(ctx context.Context, pool *pgxpool.Pool, ch chan struct{}) {
	defer close(ch)
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, pool, ch, &wait)
		if ctx.Err() != nil {
			return
		}
		_ = err // the runner's poll floor covers the gap; retry with backoff
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, pool *pgxpool.Pool, ch chan struct{}, wait *time.Duration) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var schema string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `LISTEN tasker_queue`); err != nil {
		return err
	}
	*wait = 100 * time.Millisecond
	// Wake once after (re)connecting: notifications sent while down were missed.
	select {
	case ch <- struct{}{}:
	default:
	}
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				_, _ = conn.Exec(context.WithoutCancel(ctx), `UNLISTEN *`)
			}
			return err
		}
		if n.Payload != "" && n.Payload != schema {
			continue // another deployment's queue in this database
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
