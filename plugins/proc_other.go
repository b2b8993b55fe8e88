//go:build !linux

package plugins

import "os/exec"

// prepareWorker: without Pdeathsig a worker notices a dead node when its stdin
// reaches EOF, which only helps if it is not stuck in a runaway module.
func prepareWorker(cmd *exec.Cmd) {}

func killWorker(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}
