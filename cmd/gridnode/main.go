package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/gridnode/gridnode/plugins"
)

// Exit codes, documented in README.md: scripts rely on them.
const (
	exitOK          = 0   // success
	exitItemsFailed = 1   // the job finished, but some items did not succeed (or a local check failed)
	exitUsage       = 2   // wrong command line
	exitUnreachable = 3   // no node at the address, or the credentials were refused
	exitRefused     = 4   // the node refused the request (bad module, limits, unknown job, …)
	exitIncomplete  = 5   // the job was cancelled or its results expired before all were read
	exitLocal       = 6   // a local file could not be read or written
	exitInterrupted = 130 // interrupted (Ctrl-C)
)

// exitError carries an exit code with its message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

type command struct {
	name, args, help string
	run              func(ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"agent", "[flags]", "run a node until interrupted", runAgent},
		{"dev", "[flags]", "run a ready local node and point the client commands at it", runDev},
		{"demo", "[flags]", "run the example job on an embedded 3-node cluster, each item voted on by 2 hosts, and check every result", runDemo},
		{"run-local", "MODULE [flags]", "run one input through a module exactly as a node would", runLocal},
		{"bench", "[flags]", "measure sandbox overhead, and cluster throughput and latency against raw wazero", runBench},
		{"module push", "FILE", "upload a module; prints its hash", runModulePush},
		{"job run", "MODULE INPUTS [flags]", "upload, submit, follow progress, write outputs, summarize", runJobRun},
		{"job submit", "MODULE INPUTS [flags]", "upload and submit; prints the job ID", runJobSubmit},
		{"job status", "JOB", "show a job's progress", runJobStatus},
		{"job results", "JOB [flags]", "print or save a job's results, resumable with --cursor", runJobResults},
		{"job cancel", "JOB", "cancel a job", runJobCancel},
		{"job list", "", "list the node's jobs", runJobList},
		{"info", "", "describe the node the profile points at", runInfo},
		{"members", "", "list the cluster's members as the node sees them", runMembers},
		{"leave", "", "make the node leave the cluster on purpose, then stop", runLeave},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: gridnode COMMAND [args]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-34s %s\n", c.name+" "+c.args, c.help)
	}
	fmt.Fprintln(w, "\nRun `gridnode COMMAND -h` for a command's flags. Exit codes: 0 ok, 1 items failed,")
	fmt.Fprintln(w, "2 usage, 3 node unreachable, 4 refused by the node, 5 incomplete, 6 local file error, 130 interrupted.")
}

func main() {
	plugins.MaybeServeWorker() // a worker process started by this binary's sandbox never returns from here
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	var cmd *command
	rest := args
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			cmd, rest = &c, args[len(words):]
			break
		}
	}
	if cmd == nil {
		fmt.Fprintf(os.Stderr, "gridnode: unknown command %q\n\n", strings.Join(args[:min(2, len(args))], " "))
		usage(os.Stderr)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd.run(ctx, rest)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	code := exitItemsFailed
	if errors.As(err, &ee) {
		code = ee.code
	}
	if ctx.Err() != nil && code != exitOK {
		code = exitInterrupted
	}
	if !errors.Is(err, errQuiet) {
		fmt.Fprintf(os.Stderr, "gridnode %s: %v\n", cmd.name, err)
	}
	return code
}

// errQuiet marks an error whose message was already printed.
var errQuiet = errors.New("already reported")
