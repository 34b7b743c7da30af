package bench

import (
	"time"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/metrics"
	"github.com/tasker-systems/tasker/internal/store"
)

// scrapeInterval is how often a run with Config.Metrics gathers the
// registry, as a Prometheus server would (every 15 s is common; more often
// here so that even short runs pay for scrapes).
const scrapeInterval = 5 * time.Second

// withMetrics returns st wrapped in the metrics store wrapper and a
// function that starts the collectors on the engine's bus (and a scraper)
// and returns their stop function: the cost `tasker serve` pays.
func withMetrics(st store.Store) (store.Store, func(*engine.Bus) func()) {
	m := metrics.New(metrics.Options{})
	reg := metrics.NewRegistry()
	if err := m.Register(reg); err != nil {
		panic(err) // a fresh registry cannot refuse them
	}
	statser, _ := st.(metrics.QueueStatser)
	return m.WrapStore(st), func(bus *engine.Bus) func() {
		m.Start(bus, statser)
		done := make(chan struct{})
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			t := time.NewTicker(scrapeInterval)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					_, _ = reg.Gather()
				}
			}
		}()
		return func() { close(done); <-stopped; m.Stop() }
	}
}
