package backoff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

func fixed(r float64) func() float64 { return func() float64 { return r } }

func TestWithDefaults(t *testing.T) {
	got := Config{}.WithDefaults()
	require.Equal(t, Config{
		Base:           time.Second,
		Multiplier:     2,
		Max:            5 * time.Minute,
		Min:            time.Second,
		Jitter:         0.2,
		MaxServerDelay: time.Hour,
		PriorityStep:   0.25,
	}, got)
	require.NoError(t, got.Validate())

	custom := Config{Base: 5 * time.Millisecond, Min: 5 * time.Millisecond, Jitter: 0.5}.WithDefaults()
	require.Equal(t, 5*time.Millisecond, custom.Base)
	require.Equal(t, 5*time.Millisecond, custom.Min)
	require.Equal(t, 0.5, custom.Jitter)
	require.Equal(t, MaxDefault, custom.Max)
}

func TestDelayTable(t *testing.T) {
	def := Config{}.WithDefaults()
	noJitter := def
	noJitter.Jitter = 0
	small := Config{Base: 10 * time.Millisecond, Min: 5 * time.Millisecond, Max: time.Second}.WithDefaults()
	small.Jitter = 0

	tests := []struct {
		name     string
		cfg      Config
		r        float64
		attempt  int
		priority int
		server   time.Duration
		want     time.Duration
	}{
		{"first attempt, no jitter", noJitter, 0.9, 1, 0, 0, time.Second},
		{"second attempt doubles", noJitter, 0, 2, 0, 0, 2 * time.Second},
		{"fifth attempt", noJitter, 0, 5, 0, 0, 16 * time.Second},
		{"capped at Max", noJitter, 0, 20, 0, 0, 5 * time.Minute},
		{"huge attempt capped", noJitter, 0, 1 << 62, 0, 0, 5 * time.Minute},
		{"attempt 0 counts as 1", noJitter, 0, 0, 0, 0, time.Second},
		{"negative attempt counts as 1", noJitter, 0, -7, 0, 0, time.Second},
		{"rnd 0 removes nothing", def, 0, 3, 0, 0, 4 * time.Second},
		{"rnd 0.5 removes 10%", def, 0.5, 3, 0, 0, 3600 * time.Millisecond},
		{"rnd near 1 removes ~20%", def, 0.999, 4, 0, 0, 6_401_600_000},
		{"jitter applies at the cap", def, 0.5, 30, 0, 0, 270 * time.Second},
		{"jitter never goes below Min", def, 0.99, 1, 0, 0, time.Second},
		{"priority 2 divides by 1.5", noJitter, 0, 3, 2, 0, 2_666_666_667},
		{"priority 4 halves", noJitter, 0, 3, 4, 0, 2 * time.Second},
		{"priority -4 doubles", noJitter, 0, 3, -4, 0, 8 * time.Second},
		{"low priority capped at Max", noJitter, 0, 9, -4, 0, 5 * time.Minute},
		{"high priority floored at Min", noJitter, 0, 1, 100, 0, time.Second},
		{"priority then jitter", def, 0.5, 3, 4, 0, 1800 * time.Millisecond},
		{"extreme priorities", noJitter, 0, 3, -1 << 62, 0, 5 * time.Minute},
		{"server delay wins", def, 0.9, 10, 5, 30 * time.Second, 30 * time.Second},
		{"server delay above Max allowed", def, 0.9, 1, 0, 20 * time.Minute, 20 * time.Minute},
		{"server delay capped", def, 0.9, 1, 0, 3 * time.Hour, time.Hour},
		{"server delay floored", def, 0.9, 1, 0, time.Millisecond, time.Second},
		{"negative server delay ignored", noJitter, 0, 2, 0, -time.Second, 2 * time.Second},
		{"small config", small, 0, 3, 0, 0, 40 * time.Millisecond},
		{"small config floor", small, 0, 1, 8, 0, 5 * time.Millisecond},
		{"multiplier 1 is constant", Config{Base: 3 * time.Second, Multiplier: 1, Max: time.Minute,
			Min: time.Second, MaxServerDelay: time.Hour}, 0, 1000, 0, 0, 3 * time.Second},
		{"multiplier 1.5", Config{Base: time.Second, Multiplier: 1.5, Max: time.Minute,
			Min: time.Second, MaxServerDelay: time.Hour}, 0, 3, 0, 0, 2250 * time.Millisecond},
		{"zero Min and Base", Config{Multiplier: 2, Max: time.Minute, MaxServerDelay: time.Hour}, 0, 5, 0, 0, 0},
		{"max duration Max", Config{Base: time.Second, Multiplier: 10, Max: time.Duration(1<<63 - 1),
			MaxServerDelay: time.Hour}, 0, 1 << 40, 0, 0, time.Duration(1<<63 - 1)},
		{"rnd out of range clamped", def, 7, 3, 0, 0, 3200 * time.Millisecond},
		{"rnd negative clamped", def, -3, 3, 0, 0, 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.cfg, fixed(tt.r))
			require.Equal(t, tt.want, c.Delay(tt.attempt, tt.priority, tt.server))
		})
	}
}

func TestNewDefaultsRandAndPanics(t *testing.T) {
	c := New(Config{}.WithDefaults(), nil)
	require.Equal(t, Config{}.WithDefaults(), c.Config())
	for range 100 {
		d := c.Delay(3, 0, 0)
		require.GreaterOrEqual(t, d, 3200*time.Millisecond)
		require.LessOrEqual(t, d, 4*time.Second)
	}
	require.PanicsWithError(t, "backoff: Multiplier must be a finite number >= 1 (got 0)", func() {
		New(Config{}, nil)
	})
}

func TestValidate(t *testing.T) {
	ok := Config{}.WithDefaults()
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"negative Base", func(c *Config) { c.Base = -1 }, "Base must not be negative"},
		{"negative Max", func(c *Config) { c.Max = -time.Second }, "Max must not be negative"},
		{"negative Min", func(c *Config) { c.Min = -time.Second }, "Min must not be negative"},
		{"negative MaxServerDelay", func(c *Config) { c.MaxServerDelay = -time.Second }, "MaxServerDelay must not be negative"},
		{"Multiplier below 1", func(c *Config) { c.Multiplier = 0.5 }, "Multiplier must be a finite number >= 1 (got 0.5)"},
		{"Multiplier NaN", func(c *Config) { c.Multiplier = nan() }, "Multiplier must be a finite number >= 1"},
		{"Multiplier Inf", func(c *Config) { c.Multiplier = inf() }, "Multiplier must be a finite number >= 1"},
		{"Jitter negative", func(c *Config) { c.Jitter = -0.1 }, "Jitter must be within [0, 1] (got -0.1)"},
		{"Jitter above 1", func(c *Config) { c.Jitter = 1.5 }, "Jitter must be within [0, 1] (got 1.5)"},
		{"Jitter NaN", func(c *Config) { c.Jitter = nan() }, "Jitter must be within [0, 1]"},
		{"PriorityStep negative", func(c *Config) { c.PriorityStep = -1 }, "PriorityStep must be a finite number >= 0"},
		{"Min above Max", func(c *Config) { c.Min = 10 * time.Minute }, "Min (10m0s) must not exceed Max (5m0s)"},
		{"Min above MaxServerDelay", func(c *Config) { c.Max = 3 * time.Hour; c.Min = 2 * time.Hour },
			"Min (2h0m0s) must not exceed MaxServerDelay (1h0m0s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			err := c.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
	edge := ok
	edge.Jitter, edge.Multiplier, edge.PriorityStep, edge.Min = 1, 1, 0, edge.Max
	require.NoError(t, edge.Validate())
	edge.Jitter = 0
	require.NoError(t, edge.Validate())
}

func nan() float64 { z := 0.0; return z / z }
func inf() float64 { z := 0.0; return 1 / z }

// genConfig draws a valid configuration, including zero jitter, zero
// priority step, Min == Max and extreme durations.
func genConfig(t *rapid.T) Config {
	maxD := time.Duration(rapid.Int64Range(0, int64(48*time.Hour)).Draw(t, "max"))
	minD := time.Duration(rapid.Int64Range(0, int64(maxD)).Draw(t, "min"))
	return Config{
		Base:           time.Duration(rapid.Int64Range(0, int64(time.Hour)).Draw(t, "base")),
		Multiplier:     rapid.Float64Range(1, 10).Draw(t, "multiplier"),
		Max:            maxD,
		Min:            minD,
		Jitter:         rapid.Float64Range(0, 1).Draw(t, "jitter"),
		MaxServerDelay: time.Duration(rapid.Int64Range(int64(minD), int64(72*time.Hour)).Draw(t, "maxServer")),
		PriorityStep:   rapid.Float64Range(0, 5).Draw(t, "priorityStep"),
	}
}

func genRnd(t *rapid.T, label string) float64 {
	return rapid.Float64Range(0, 0.9999999999).Draw(t, label)
}

func TestPropertyBounds(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := genConfig(t)
		if err := cfg.Validate(); err != nil {
			t.Fatalf("generated invalid config: %v", err)
		}
		c := New(cfg, fixed(genRnd(t, "r")))
		attempt := rapid.Int().Draw(t, "attempt")
		priority := rapid.Int().Draw(t, "priority")

		d := c.Delay(attempt, priority, 0)
		if d < cfg.Min || d > cfg.Max {
			t.Fatalf("delay %s outside [%s, %s]", d, cfg.Min, cfg.Max)
		}
		server := time.Duration(rapid.Int64Range(1, 1<<63-1).Draw(t, "server"))
		d = c.Delay(attempt, priority, server)
		if d < cfg.Min || d > cfg.MaxServerDelay {
			t.Fatalf("server delay %s outside [%s, %s]", d, cfg.Min, cfg.MaxServerDelay)
		}
		if server >= cfg.Min && server <= cfg.MaxServerDelay && d != server {
			t.Fatalf("in-range server delay %s changed to %s", server, d)
		}
	})
}

func TestPropertyNonDecreasingInAttempt(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := genConfig(t)
		cfg.Jitter = 0
		c := New(cfg, fixed(genRnd(t, "r")))
		priority := rapid.IntRange(-1000, 1000).Draw(t, "priority")
		a := rapid.IntRange(-5, 2000).Draw(t, "a")
		b := a + rapid.IntRange(0, 2000).Draw(t, "gap")
		if da, db := c.Delay(a, priority, 0), c.Delay(b, priority, 0); da > db {
			t.Fatalf("attempt %d -> %s but later attempt %d -> %s", a, da, b, db)
		}
	})
}

func TestPropertyPriorityNeverSlower(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := genConfig(t)
		c := New(cfg, fixed(genRnd(t, "r")))
		attempt := rapid.IntRange(-5, 5000).Draw(t, "attempt")
		lo := rapid.Int().Draw(t, "lo")
		hi := rapid.IntRange(lo, int(^uint(0)>>1)).Draw(t, "hi")
		if dl, dh := c.Delay(attempt, lo, 0), c.Delay(attempt, hi, 0); dh > dl {
			t.Fatalf("priority %d -> %s is longer than priority %d -> %s", hi, dh, lo, dl)
		}
	})
}

func TestPropertyJitterOnlyShortens(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := genConfig(t)
		attempt := rapid.IntRange(1, 100).Draw(t, "attempt")
		priority := rapid.IntRange(-10, 10).Draw(t, "priority")
		still := New(cfg, fixed(0)).Delay(attempt, priority, 0)
		jittered := New(cfg, fixed(genRnd(t, "r"))).Delay(attempt, priority, 0)
		if jittered > still {
			t.Fatalf("jitter lengthened %s to %s", still, jittered)
		}
		floor := max(time.Duration(float64(still)*(1-cfg.Jitter))-1, cfg.Min)
		if jittered < floor {
			t.Fatalf("jitter removed more than %v of %s: %s", cfg.Jitter, still, jittered)
		}
	})
}
