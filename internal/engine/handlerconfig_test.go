package engine_test

import (
	"context"
	"encoding/json"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// A handler gets handler_config numbers as float64 where that is exact and
// as json.Number with the template's digits where it is not (a large
// integer, 1e400): before, 1e400 failed the step and large integers lost
// their last digits.
func TestHandlerConfigNumbersReachHandlersExactly(t *testing.T) {
	for name, open := range bothStores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			reg := template.NewRegistry()
			addTemplate(t, reg, `name: nums
namespace_name: t
step_templates:
  - name: only
    handler_class: H
    handler_config:
      small: 3
      half: 1.5
      big: 9007199254740993
      huge: 1e400
      nested: {list: [12345678901234567890, 7]}
`)
			e, err := engine.New(engine.Config{Store: st, Templates: reg, EnqueueHandler: engine.EventEnqueueHandler{}})
			require.NoError(t, err)
			got := make(chan map[string]any, 1)
			e.RegisterHandler("H", taskertype.StepHandlerFunc(func(ctx context.Context, sc *taskertype.StepContext) (any, error) {
				got <- sc.HandlerConfig
				return nil, nil
			}))
			task, _, err := e.InitializeTask(context.Background(), &engine.TaskRequest{Namespace: "t", Name: "nums"})
			require.NoError(t, err)
			res, err := e.RunTask(context.Background(), task.ID)
			require.NoError(t, err)
			require.Equal(t, taskertype.TaskStateComplete, res.Status)
			cfg := <-got
			require.Equal(t, float64(3), cfg["small"])
			require.Equal(t, 1.5, cfg["half"])
			require.Equal(t, json.Number("9007199254740993"), cfg["big"])
			// PostgreSQL's jsonb writes 1e400 out in full; the value is the same.
			huge, ok := cfg["huge"].(json.Number)
			require.True(t, ok, "%T", cfg["huge"])
			hv, _, err := big.ParseFloat(string(huge), 10, 2000, big.ToNearestEven)
			require.NoError(t, err)
			want, _, _ := big.ParseFloat("1e400", 10, 2000, big.ToNearestEven)
			require.Zero(t, hv.Cmp(want), "1e400 came as %s", huge)
			list := cfg["nested"].(map[string]any)["list"].([]any)
			require.Equal(t, json.Number("12345678901234567890"), list[0])
			require.Equal(t, float64(7), list[1])
		})
	}
}
