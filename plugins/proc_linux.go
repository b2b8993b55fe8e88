//go:build linux

package plugins

import (
	"os/exec"
	"syscall"
)

// prepareWorker puts the worker in its own process group (so a kill takes any
// children with it) and asks the kernel to kill it if the node dies.
func prepareWorker(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killWorker(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}
