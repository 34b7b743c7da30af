package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"

	"github.com/tasker-systems/tasker"
)

// Create many tasks with one call: each request gets its own result, a bad
// one fails alone, and an idempotency key already used gives the task it
// named.
func ExampleClient_InitializeTasks() {
	ctx := context.Background()
	c, closeClient := openExample(tasker.Config{})
	defer closeClient()
	registerGreet(c)

	req := func(name, key string) *tasker.TaskRequest {
		return &tasker.TaskRequest{Namespace: "demo", Name: "greet", IdempotencyKey: key,
			Context: json.RawMessage(fmt.Sprintf(`{"name": %q}`, name))}
	}
	results, err := c.InitializeTasks(ctx, []*tasker.TaskRequest{
		req("ada", "greet-ada"),
		{Namespace: "demo", Name: "no_such_template"},
		req("grace", "greet-grace"),
		req("ada again", "greet-ada"),
	})
	if err != nil {
		log.Fatal(err) // nothing was written: the database failed
	}
	for i, r := range results {
		var be *tasker.BatchItemError
		switch {
		case errors.As(r.Err, &be):
			fmt.Printf("request %d failed: not found: %v\n", be.Index, errors.Is(r.Err, tasker.ErrNotFound))
		case r.Created:
			fmt.Printf("request %d created task %d\n", i, r.Task.ID)
		default:
			fmt.Printf("request %d found task %d\n", i, r.Task.ID)
		}
	}
	// Output:
	// request 0 created task 1
	// request 1 failed: not found: true
	// request 2 created task 2
	// request 3 found task 1
}
