package schedule

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tasker-systems/tasker/internal/template"
)

// stepClock is a Clock whose time only moves when the benchmark sets it.
type stepClock struct{ now time.Time }

func (c *stepClock) Now() time.Time { return c.now }

func (c *stepClock) After(time.Duration) (<-chan time.Time, func()) { return nil, func() {} }

// BenchmarkWake10000 is the scheduler's cost for 10,000 schedules that
// tick once a minute (cron "* * * * *" in ten zones, and @every 60s): one
// op is one wakeup at which all of them are due: for each, the tick's key
// and tags, the next tick, and the heap. Task creation itself (a database
// transaction per tick) is not counted: Create does nothing. One op per
// minute of a core is the real load, so ns/op divided by 60 s is the share
// of one core (0.6 ms/op = 1 %).
func BenchmarkWake10000(b *testing.B) {
	zones := []string{"UTC", "America/New_York", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney",
		"America/Los_Angeles", "Europe/London", "Asia/Kolkata", "America/Sao_Paulo", "Africa/Cairo"}
	reg := template.NewRegistry()
	const perTemplate = 100
	for i := range 10000 / perTemplate {
		t := &template.Template{Name: fmt.Sprintf("t%03d", i), Steps: []*template.StepTemplate{{Name: "a", HandlerClass: "tasker:noop"}}}
		for j := range perTemplate {
			cron := "* * * * *"
			if j%10 == 9 {
				cron = "@every 60s"
			}
			t.Schedules = append(t.Schedules, &template.Schedule{Name: fmt.Sprintf("s%03d", j), Cron: cron,
				TimeZone: zones[(i+j)%len(zones)], Enabled: true})
		}
		if err := reg.Add(t); err != nil {
			b.Fatal(err)
		}
	}
	clock := &stepClock{now: time.Date(2026, 6, 1, 12, 0, 30, 0, time.UTC)}
	created := 0
	s, err := New(Config{Templates: reg, Clock: clock,
		Create: func(context.Context, *Tick) (int64, bool, error) { created++; return int64(created), true, nil }})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	s.sync(ctx)
	if len(s.queue) != 10000 {
		b.Fatalf("%d schedules in the heap", len(s.queue))
	}
	created = 0 // sync created the 12:00 ticks (30 s late: within the grace)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		clock.now = clock.now.Add(time.Minute)
		s.Wake(ctx)
	}
	b.StopTimer()
	if created != 10000*b.N {
		b.Fatalf("created %d ticks, want %d", created, 10000*b.N)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(time.Minute.Nanoseconds())*100, "%core")
}
