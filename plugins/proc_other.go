//go:build !linux

package plugins

import (
	"os"
	"os/exec"
)

// prepareWorker: without Pdeathsig a worker notices a dead node when its stdin
// reaches EOF, which only helps if it is not stuck in a runaway module.
func prepareWorker(cmd *exec.Cmd) {}

func killWorker(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}

// dirStamp is never valid off Linux: every scratch directory is removed
// after its execution.
type dirStamp struct{ valid bool }

func stampOf(dir string) (dirStamp, error) {
	_, err := os.Stat(dir)
	return dirStamp{}, err
}

func lowerPriority(pid int) {}
