// Package taskertype holds the types shared by the public tasker API and
// the engine's internals: task and step states, the step handler contract,
// the retry-control errors a handler returns, lifecycle events, the typed
// errors the engine reports, task requests and their results (TaskRequest,
// HandleResult, Action, Actor) and the pull protocol's documents
// (ClaimResult, ExternalResult, ReportResult, ...). Package tasker
// re-exports each under the same name. It imports nothing else from this
// module, so every other package may depend on it without import cycles.
package taskertype
