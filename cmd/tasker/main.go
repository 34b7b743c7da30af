// Command tasker runs and operates Tasker workflows: `tasker run` drives a
// task from a template in the foreground, `tasker serve` runs the HTTP API
// with a pool of workers, and the task, template and migrate commands
// inspect and operate on templates, stored tasks and the database schema.
// Run `tasker help` for the full list.
package main

import (
	"context"
	"os"

	"github.com/tasker-systems/tasker/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], cli.Options{Version: version}))
}
