// Package tasker is a workflow orchestration engine on PostgreSQL (or an
// embedded SQLite file). A task is one run of a DAG of steps defined by a
// YAML task template; tasker persists tasks and steps, finds the steps that
// may run, runs them concurrently, retries failures with backoff (honouring
// a server's Retry-After), finalizes the task and publishes lifecycle events.
//
// A Go program opens a Client, registers step handlers, initializes tasks
// and either drives them in-process (RunTask) or runs a runner (Run) that
// drains the durable queue shared by every process on the same PostgreSQL.
//
//	c, err := tasker.Open(ctx, tasker.Config{TemplatesDir: "config/tasker/tasks"})
//	c.RegisterHandler("ChargeCard", tasker.StepHandlerFunc(charge))
//	task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "shop", Name: "checkout", Context: ctxJSON})
//	res, err := c.RunTask(ctx, task.ID)
//
// Processes that run handlers outside Go (the Ruby gem) drive tasks through
// the pull protocol of Client.Worker. Every type the API takes or returns is
// defined here or in package taskertype (re-exported here), and every
// Config option documents its default.
//
// Handlers return results (anything encoding/json marshals) or an error:
// tasker.Retryable(err, after) asks for another attempt (after a server's
// delay when after > 0), tasker.Permanent(err) ends the step's retries, and
// any other error is retryable.
package tasker
