package tasker

import (
	"testing"

	"github.com/tasker-systems/tasker/internal/backoff"
	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/template"
)

// TestDefaultsMatchInternals checks that the defaults this package documents
// are the ones the engine, the template loader and the backoff calculator
// apply.
func TestDefaultsMatchInternals(t *testing.T) {
	for name, pair := range map[string][2]any{
		"TemplatesDir":     {TemplatesDirDefault, template.DirDefault},
		"StepLease":        {StepLeaseDefault, engine.StepLeaseDefault},
		"QueueLease":       {QueueLeaseDefault, engine.QueueLeaseDefault},
		"PollInterval":     {PollIntervalDefault, engine.PollIntervalDefault},
		"RescueInterval":   {RescueIntervalDefault, engine.RescueIntervalDefault},
		"ShutdownGrace":    {ShutdownGraceDefault, engine.ShutdownGraceDefault},
		"Retention":        {RetentionDefault, engine.RetentionDefault},
		"RetentionFailed":  {RetentionFailedDefault, engine.RetentionFailedDefault},
		"RetainForever":    {RetainForever, engine.RetainForever},
		"PruneInterval":    {PruneIntervalDefault, engine.PruneIntervalDefault},
		"PruneBatch":       {PruneBatchDefault, engine.PruneBatchDefault},
		"RetentionForever": {RetentionForever, template.RetentionForever},
	} {
		if pair[0] != pair[1] {
			t.Errorf("%sDefault = %v, the code applies %v", name, pair[0], pair[1])
		}
	}
	want := backoff.Config{Base: backoff.BaseDefault, Multiplier: backoff.MultiplierDefault, Max: backoff.MaxDefault,
		Min: backoff.MinDefault, Jitter: backoff.JitterDefault, MaxServerDelay: backoff.MaxServerDelayDefault,
		PriorityStep: backoff.PriorityStepDefault}
	if got := (BackoffConfig{}).internal().WithDefaults(); got != want {
		t.Errorf("zero BackoffConfig takes %+v, want %+v", got, want)
	}
}
