package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tasker-systems/tasker"
)

// Event subscriptions of the RPC surface. A subscription without a group has
// a buffer of its own and receives every event of its kinds. Subscriptions
// that name the same group share one buffer (competing consumers): each
// event is delivered to exactly one member, whichever polls first. The
// group's buffer lives while at least one member lives; members end like any
// subscription (events_unsubscribe, or SubscriptionIdleTimeout without a
// poll), so a group whose members were all abandoned ends with the last one.
// A buffer is bounded either way: events that do not fit are dropped and
// counted (pollDoc.Dropped).

// SubscriptionGroupMaxLen bounds the length of a subscription group's name.
const SubscriptionGroupMaxLen = 200

// subscription is one events_subscribe: its own poll state over a buffer it
// owns (no group) or shares with the other members of its group.
type subscription struct {
	ch       <-chan tasker.Event
	lastPoll time.Time
	// group is the subscription's group, nil when it has none.
	group *subscriptionGroup
	// cancel ends the buffer of a subscription without a group.
	cancel func()
	// busy serializes polls of one subscription, so that the events one
	// subscription receives keep their order.
	busy sync.Mutex
}

// subscriptionGroup is the buffer the members of a group share.
type subscriptionGroup struct {
	name    string
	kinds   []string // sorted, deduplicated; empty = every kind
	ch      <-chan tasker.Event
	cancel  func()
	members int
}

// subscribeParams is the input of "events_subscribe".
type subscribeParams struct {
	// Kinds filters event names (all when empty).
	Kinds []string `json:"kinds"`
	// Buffer is the subscription's buffer in events (SubscriptionBufferDefault
	// when 0). In a group, the member that creates the group sizes it.
	Buffer int `json:"buffer"`
	// Group names a subscription group: its members share one buffer and
	// each event goes to one of them. Empty: a buffer of its own.
	Group string `json:"group"`
}

func (p *subscribeParams) validate() error {
	if p.Buffer < 0 || p.Buffer > 1<<20 {
		return badRequest("buffer must be from 0 to 1048576", map[string]any{"field": "buffer"})
	}
	if p.Group != "" && (strings.TrimSpace(p.Group) == "" || len(p.Group) > SubscriptionGroupMaxLen) {
		return badRequest(fmt.Sprintf("group must be a name of 1 to %d characters (not only spaces)", SubscriptionGroupMaxLen),
			map[string]any{"field": "group"})
	}
	return nil
}

// subscribeDoc answers "events_subscribe".
type subscribeDoc struct {
	SubscriptionID string `json:"subscription_id"`
	// Group and Members (including this one) are set for a group member.
	Group   string `json:"group,omitempty"`
	Members int    `json:"members,omitempty"`
}

func (d *Dispatcher) eventsSubscribe(_ context.Context, params []byte) (any, error) {
	var p subscribeParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.Buffer == 0 {
		p.Buffer = SubscriptionBufferDefault
	}
	names := slices.Clone(p.Kinds)
	slices.Sort(names)
	names = slices.Compact(names)
	kinds := make([]tasker.EventKind, len(names))
	for i, k := range names {
		kinds[i] = tasker.EventKind(k)
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	now := time.Now()

	d.mu.Lock()
	defer d.mu.Unlock()
	d.reapLocked(now)
	if p.Group == "" {
		ch, cancel := d.c.SubscribeBuffered(p.Buffer, kinds...)
		d.subs[id] = &subscription{ch: ch, cancel: cancel, lastPoll: now}
		return subscribeDoc{SubscriptionID: id}, nil
	}
	g := d.groups[p.Group]
	if g == nil {
		ch, cancel := d.c.SubscribeBuffered(p.Buffer, kinds...)
		g = &subscriptionGroup{name: p.Group, kinds: names, ch: ch, cancel: cancel}
		d.groups[p.Group] = g
	} else if !slices.Equal(g.kinds, names) {
		return nil, badRequest("group "+strconv.Quote(p.Group)+" subscribes other kinds: every member must ask for the same kinds",
			map[string]any{"field": "kinds", "group": p.Group, "kinds": g.kinds})
	}
	g.members++
	d.subs[id] = &subscription{ch: g.ch, group: g, lastPoll: now}
	return subscribeDoc{SubscriptionID: id, Group: g.name, Members: g.members}, nil
}

// endLocked ends subscription id and, with its last member, its group's
// buffer; it reports whether the subscription existed.
func (d *Dispatcher) endLocked(id string) bool {
	s := d.subs[id]
	if s == nil {
		return false
	}
	delete(d.subs, id)
	if g := s.group; g != nil {
		g.members--
		if g.members <= 0 {
			g.cancel()
			if d.groups[g.name] == g {
				delete(d.groups, g.name)
			}
		}
		return true
	}
	s.cancel()
	return true
}

// reapLocked ends subscriptions nobody polled for SubscriptionIdleTimeout.
func (d *Dispatcher) reapLocked(now time.Time) {
	for id, s := range d.subs {
		if now.Sub(s.lastPoll) > SubscriptionIdleTimeout {
			d.endLocked(id)
		}
	}
}

func (d *Dispatcher) subscription(id string) (*subscription, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	s := d.subs[id]
	if s == nil || now.Sub(s.lastPoll) > SubscriptionIdleTimeout {
		if s != nil {
			d.endLocked(id)
		}
		return nil, &apiError{status: http.StatusNotFound, code: CodeNotFound,
			message: "no subscription " + strconv.Quote(id) + " (it ended or was idle too long): subscribe again",
			details: map[string]any{"subscription_id": id}}
	}
	s.lastPoll = now
	// Polls reap abandoned subscriptions too (at most once a second), so
	// that a group does not count members that died.
	if now.Sub(d.lastReap) > time.Second {
		d.lastReap = now
		d.reapLocked(now)
	}
	return s, nil
}
