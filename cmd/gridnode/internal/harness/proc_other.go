//go:build !linux

package harness

import (
	"syscall"
	"time"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// waitProcState cannot look without /proc: signals are delivered promptly
// enough for these tests.
func waitProcState(pid int, stopped bool, timeout time.Duration) error { return nil }
