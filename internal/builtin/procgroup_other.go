//go:build !unix

package builtin

import "os/exec"

// setProcessGroup keeps the default cancellation (kill the program) where
// process groups are not available.
func setProcessGroup(*exec.Cmd) {}

// killProcessGroup does nothing where process groups are not available.
func killProcessGroup(int) error { return nil }
