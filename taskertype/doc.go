// Package taskertype holds the leaf types shared by the public tasker API and
// the engine's internals: task and step states, the step handler contract,
// the retry-control errors a handler returns, lifecycle events and the typed
// errors the engine reports. It imports nothing else from this module, so
// every other package may depend on it without import cycles.
package taskertype
