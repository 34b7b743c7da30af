package engine

import (
	"sync"
	"sync/atomic"

	"github.com/tasker-systems/tasker/taskertype"
)

// SubscriberBufferDefault is each subscriber's buffer, in events.
const SubscriberBufferDefault = 1024

// Bus is the in-process EventPublisher: it fans committed lifecycle events
// out to subscribers. Publishing never blocks: each subscriber has a bounded
// buffer and an event that does not fit is dropped for that subscriber (and
// counted), so a slow subscriber never stalls orchestration. Durable work
// (enqueue requests) never depends on an event being delivered: the queue
// table is the source of truth.
type Bus struct {
	mu      sync.RWMutex
	subs    map[int]*subscriber
	nextID  int
	dropped atomic.Int64
}

type subscriber struct {
	ch    chan taskertype.Event
	kinds map[taskertype.EventKind]bool // nil = all
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{subs: map[int]*subscriber{}} }

// Subscribe returns a channel receiving the given kinds (all when none) and
// a cancel function that closes it. buffer <= 0 means SubscriberBufferDefault.
func (b *Bus) Subscribe(buffer int, kinds ...taskertype.EventKind) (<-chan taskertype.Event, func()) {
	if buffer <= 0 {
		buffer = SubscriberBufferDefault
	}
	s := &subscriber{ch: make(chan taskertype.Event, buffer)}
	if len(kinds) > 0 {
		s.kinds = map[taskertype.EventKind]bool{}
		for _, k := range kinds {
			s.kinds[k] = true
		}
	}
	b.mu.Lock()
	id := b.nextID
	b.nextID++
	b.subs[id] = s
	b.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, id)
			b.mu.Unlock()
			close(s.ch)
		})
	}
}

// SubscribeFunc calls fn for every event of the given kinds, in order, on a
// goroutine of its own. The returned function stops it and waits for fn's
// current call to return.
func (b *Bus) SubscribeFunc(fn func(taskertype.Event), kinds ...taskertype.EventKind) func() {
	ch, cancel := b.Subscribe(0, kinds...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range ch {
			fn(ev)
		}
	}()
	return func() { cancel(); <-done }
}

// Publish delivers events to every interested subscriber without blocking.
func (b *Bus) Publish(events ...taskertype.Event) {
	if len(events) == 0 {
		return
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, s := range b.subs {
		for _, ev := range events {
			if s.kinds != nil && !s.kinds[ev.Kind] {
				continue
			}
			select {
			case s.ch <- ev:
			default:
				b.dropped.Add(1)
			}
		}
	}
}

// Dropped counts events dropped because a subscriber's buffer was full.
func (b *Bus) Dropped() int64 { return b.dropped.Load() }
