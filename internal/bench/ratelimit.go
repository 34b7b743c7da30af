package bench

import (
	"math"

	"github.com/tasker-systems/tasker/internal/template"
)

// withRateLimit puts every step of t under one rate limit named bench of
// perSecond steps a second with a burst of as many (at least 1); nothing
// when perSecond <= 0. A limit above the run's throughput measures the cost
// of taking tokens; a lower one measures throttling.
func withRateLimit(t *template.Template, perSecond float64) {
	if perSecond <= 0 {
		return
	}
	burst := int(max(1, min(math.Ceil(perSecond), template.MaxBurst)))
	t.RateLimits = map[string]*template.RateLimit{"bench": {PerSecond: perSecond, Burst: burst}}
	for _, s := range t.Steps {
		s.RateLimit = "bench"
	}
}

// withHandlerLimit limits the handler class of every step of t to n
// attempts running at once (handler_limits); nothing when n <= 0. A limit
// above the run's parallelism measures the cost of taking a slot per step;
// a lower one measures waiting for slots.
func withHandlerLimit(t *template.Template, n int) {
	if n <= 0 {
		return
	}
	t.HandlerLimits = map[string]int{}
	for _, s := range t.Steps {
		t.HandlerLimits[s.HandlerClass] = n
	}
}
