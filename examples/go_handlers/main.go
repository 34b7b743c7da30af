// Command go_handlers runs a workflow whose steps are Go functions: the
// library use of tasker, without the tasker command.
//
//	go run ./examples/go_handlers                       # SQLite file in a temp dir
//	go run ./examples/go_handlers -database-url postgres://...
//
// The refund step fails once with a retryable error that asks for a retry
// after one second, as a payment API answering 429 with Retry-After would.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/tasker-systems/tasker"
)

//go:embed refund.yaml
var refundYAML []byte

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "go_handlers:", err)
		os.Exit(1)
	}
}

func run() error {
	dbURL := flag.String("database-url", "", "postgres://... or sqlite:PATH (default: a SQLite file in a temp dir)")
	flag.Parse()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tasker-go-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *dbURL == "" {
		*dbURL = "sqlite:" + filepath.Join(dir, "tasker.db")
	}
	// The template is compiled into the program (an empty templates
	// directory keeps Open from reading config/tasker/tasks).
	c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: *dbURL, AutoMigrate: true, TemplatesDir: dir})
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.AddTemplate("refund.yaml", refundYAML); err != nil {
		return err
	}

	var refundCalls atomic.Int32
	c.RegisterHandler("LookupCharge", tasker.StepHandlerFunc(func(_ context.Context, sc *tasker.StepContext) (any, error) {
		var in struct {
			ChargeID    string `json:"charge_id"`
			AmountCents int    `json:"amount_cents"`
		}
		if err := json.Unmarshal(sc.Context, &in); err != nil {
			return nil, tasker.Permanent(fmt.Errorf("decode context: %w", err))
		}
		return map[string]any{"charge_id": in.ChargeID, "refundable_cents": in.AmountCents, "currency": "EUR"}, nil
	}))
	c.RegisterHandler("RefundCharge", tasker.StepHandlerFunc(func(_ context.Context, sc *tasker.StepContext) (any, error) {
		if refundCalls.Add(1) == 1 {
			return nil, tasker.Retryable(errors.New("payment API: 429 Too Many Requests"), time.Second)
		}
		var charge struct {
			ChargeID        string `json:"charge_id"`
			RefundableCents int    `json:"refundable_cents"`
		}
		if err := json.Unmarshal(sc.DependencyResults["lookup_charge"], &charge); err != nil {
			return nil, tasker.Permanent(fmt.Errorf("decode lookup_charge results: %w", err))
		}
		return map[string]any{"refund_id": "re_" + charge.ChargeID, "cents": charge.RefundableCents}, nil
	}))
	notify := tasker.StepHandlerFunc(func(_ context.Context, sc *tasker.StepContext) (any, error) {
		return map[string]any{"step": sc.StepName, "refund": json.RawMessage(sc.DependencyResults["refund_charge"])}, nil
	})
	c.RegisterHandler("NotifyCustomer", notify)
	c.RegisterHandler("UpdateLedger", notify)

	events, stop := c.Subscribe(tasker.EventStepCompleted, tasker.EventStepFailed, tasker.EventStepRetryScheduled)
	defer stop()
	go func() {
		for ev := range events {
			fmt.Printf("  %-22s %s\n", ev.Kind, ev.StepName)
		}
	}()

	task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "payments", Name: "refund",
		Context: json.RawMessage(`{"charge_id": "ch_123", "amount_cents": 4200}`), IdempotencyKey: "refund-ch_123"})
	if err != nil {
		return err
	}
	fmt.Printf("task %d created; running it here\n", task.ID)
	res, err := c.RunTask(ctx, task.ID)
	if err != nil {
		return err
	}
	time.Sleep(50 * time.Millisecond) // let the event printer catch up
	detail, err := c.Task(ctx, task.ID)
	if err != nil {
		return err
	}
	fmt.Printf("task %d %s (%s)\n", task.ID, res.Status, res.Reason)
	for _, st := range detail.Steps {
		fmt.Printf("  %-16s %-9s attempts=%d results=%s\n", st.Name, st.State, st.Attempts, st.Results)
	}
	if res.Status != "complete" {
		return fmt.Errorf("task ended %s", res.Status)
	}
	return nil
}
