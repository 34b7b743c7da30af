package tasker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker"
)

// greetYAML is a two-step task template: hello, then shout (which reads
// hello's result).
const greetYAML = `name: greet
namespace_name: demo
version: 1.0.0
step_templates:
  - name: hello
    handler_class: Hello
  - name: shout
    handler_class: Shout
    depends_on_step: hello
`

// openExample opens a client on a SQLite file in a new temporary directory
// and returns it with a function that closes it and removes the directory.
func openExample(cfg tasker.Config) (*tasker.Client, func()) {
	dir, err := os.MkdirTemp("", "tasker-example-")
	if err != nil {
		log.Fatal(err)
	}
	cfg.DatabaseURL = "sqlite:" + filepath.Join(dir, "tasker.db")
	cfg.TemplatesDir = dir
	c, err := tasker.Open(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.AddTemplate("greet.yml", []byte(greetYAML)); err != nil {
		log.Fatal(err)
	}
	return c, func() { _ = c.Close(); _ = os.RemoveAll(dir) }
}

// registerGreet registers the Go handlers of the greet template.
func registerGreet(c *tasker.Client) {
	c.RegisterHandler("Hello", tasker.StepHandlerFunc(func(ctx context.Context, s *tasker.StepContext) (any, error) {
		var in struct{ Name string }
		if err := json.Unmarshal(s.Context, &in); err != nil {
			return nil, tasker.Permanent(err)
		}
		return map[string]string{"greeting": "hello, " + in.Name}, nil
	}))
	c.RegisterHandler("Shout", tasker.StepHandlerFunc(func(ctx context.Context, s *tasker.StepContext) (any, error) {
		var hello struct{ Greeting string }
		if err := json.Unmarshal(s.DependencyResults["hello"], &hello); err != nil {
			return nil, tasker.Permanent(err)
		}
		return map[string]string{"shouted": hello.Greeting + "!"}, nil
	}))
}

// Open a client, add a template, register its handlers, create a task and
// drive it to the end in this process.
func Example() {
	ctx := context.Background()
	c, closeClient := openExample(tasker.Config{})
	defer closeClient()
	registerGreet(c)

	task, created, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "demo", Name: "greet",
		Context: json.RawMessage(`{"name": "world"}`)})
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.RunTask(ctx, task.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created:", created, "outcome:", res.Outcome, "status:", res.Status)

	detail, err := c.Task(ctx, task.ID)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range detail.Steps {
		fmt.Printf("%s %s %s\n", s.Name, s.State, s.Results)
	}
	// Output:
	// created: true outcome: complete status: complete
	// hello complete {"greeting":"hello, world"}
	// shout complete {"shouted":"hello, world!"}
}

// Run is the runner: it takes tasks from the durable queue, which every
// process on the same database shares, until its context ends.
func ExampleClient_Run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, closeClient := openExample(tasker.Config{})
	defer closeClient()
	registerGreet(c)

	done, unsubscribe := c.Subscribe(tasker.EventTaskCompleted)
	defer unsubscribe()
	stopped := make(chan error, 1)
	go func() { stopped <- c.Run(ctx, 2) }()

	task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "demo", Name: "greet",
		Context: json.RawMessage(`{"name": "runner"}`)})
	if err != nil {
		log.Fatal(err)
	}
	ev := <-done
	fmt.Println(ev.Kind, ev.TaskID == task.ID)

	cancel() // the runner stops gracefully
	fmt.Println("run returned:", <-stopped)
	// Output:
	// task.completed true
	// run returned: <nil>
}

// Subscribe delivers lifecycle events after their state changes commit.
func ExampleClient_Subscribe() {
	ctx := context.Background()
	c, closeClient := openExample(tasker.Config{})
	defer closeClient()
	registerGreet(c)

	events, unsubscribe := c.Subscribe(tasker.EventStepCompleted, tasker.EventTaskCompleted)
	defer unsubscribe()
	task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "demo", Name: "greet",
		Context: json.RawMessage(`{"name": "events"}`)})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.RunTask(ctx, task.ID); err != nil {
		log.Fatal(err)
	}
	for ev := range events {
		fmt.Println(ev.Kind, ev.StepName)
		if ev.Kind == tasker.EventTaskCompleted {
			break
		}
	}
	// Output:
	// step.completed hello
	// step.completed shout
	// task.completed
}

// A worker that is not written in Go (the Ruby gem, through libtasker or
// `tasker serve`) drives a task with the pull protocol: claim the ready
// steps, run them, report the results, and let the engine decide what comes
// next. With EventEnqueue the client expects such workers, so the task's
// handlers need not be registered in Go.
func ExampleWorker() {
	ctx := context.Background()
	c, closeClient := openExample(tasker.Config{EventEnqueue: true})
	defer closeClient()
	w := c.Worker()

	task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "demo", Name: "greet",
		Context: json.RawMessage(`{"name": "worker"}`)})
	if err != nil {
		log.Fatal(err)
	}
	const owner = "example-worker-1"
	for {
		claim, err := w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: task.ID, Owner: owner})
		if err != nil {
			log.Fatal(err)
		}
		results := make([]tasker.ExternalResult, 0, len(claim.Steps))
		for _, s := range claim.Steps {
			fmt.Println("ran", s.Name, "attempt", s.Attempt)
			results = append(results, tasker.ExternalResult{StepID: s.StepID, Attempt: s.Attempt, Success: true,
				Results: json.RawMessage(`{"ok": true}`)})
		}
		rep, err := w.ReportAndFinalize(ctx, tasker.ReportParams{TaskID: task.ID, Owner: owner, Results: results})
		if err != nil {
			log.Fatal(err)
		}
		if rep.Final.Outcome != tasker.ActionContinue {
			fmt.Println("outcome:", rep.Final.Outcome, "status:", rep.Final.Status)
			break
		}
	}
	// Output:
	// ran hello attempt 1
	// ran shout attempt 1
	// outcome: complete status: complete
}

// InitializeTaskTx creates a task inside your own PostgreSQL transaction:
// it exists if and only if your transaction commits. (Not run: it needs a
// PostgreSQL server; txenqueue_test.go tests it.)
func ExampleClient_InitializeTaskTx() {
	ctx := context.Background()
	url := os.Getenv("DATABASE_URL") // postgres://...
	c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: url, AutoMigrate: true})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op after Commit
	if _, err := tx.Exec(ctx, "INSERT INTO orders (id) VALUES ($1)", 42); err != nil {
		log.Fatal(err)
	}
	task, _, err := c.InitializeTaskTx(ctx, tx, &tasker.TaskRequest{Namespace: "shop", Name: "order_fulfillment",
		Context: json.RawMessage(`{"order_id": 42}`)})
	if err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("task", task.ID, "enqueued with order 42")
}
