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

// dirStamp identifies a directory's state: any entry added or removed, or any
// attribute set, moves its change time (which no caller can set back).
type dirStamp struct {
	valid     bool
	ino       uint64
	ctimeSec  int64
	ctimeNsec int64
}

func stampOf(dir string) (dirStamp, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return dirStamp{}, err
	}
	return dirStamp{valid: true, ino: st.Ino, ctimeSec: st.Ctim.Sec, ctimeNsec: st.Ctim.Nsec}, nil
}

// workerNice is the scheduling priority of worker processes: below the
// node's own, so that a node whose cores are busy with executions still
// answers its clients (and, in a cluster, its heartbeats) promptly.
const workerNice = 10

func lowerPriority(pid int) {
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, pid, workerNice)
}
