package harness

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"time"
)

// sysProcAttr makes the kernel SIGKILL an agent when the test process dies
// without running its cleanups (a timeout panic, a kill of `go test`).
// Pdeathsig follows the thread that started the child; Go keeps its
// threads for the life of the process, so in practice this is the process.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// waitProcState polls /proc until the process is stopped (state T) or, with
// stopped false, not stopped any more.
func waitProcState(pid int, stopped bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil // gone, or no /proc: nothing to wait for
		}
		// pid (comm) state ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			return nil
		}
		state := b[i+2]
		if (state == 'T' || state == 't') == stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d: state %c after %s", pid, state, timeout)
		}
		<-tick.C
	}
}
