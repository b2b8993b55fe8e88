package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sched"
)

// runLocal runs one input through a module with the node's sandbox, limits
// and determinism, without any node: the job author's inner loop.
func runLocal(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gridnode run-local", flag.ContinueOnError)
	var f jobFlags
	f.register(fs) // the job flags (limits, args, env, files); input flags are ours
	input := fs.String("input", "-", "the item's input: a file, '-' for stdin")
	inline := fs.String("in", "", "the item's input as a literal string (instead of --input)")
	itemID := fs.String("item-id", "local", "item ID: seeds the virtual clock and randomness")
	iso := fs.String("isolation", "process", "process or inprocess")
	module, err := positionalArg(fs, args, needModule)
	if err != nil {
		return err
	}
	wasm, err := os.ReadFile(module)
	if err != nil {
		return fail(exitLocal, "read module: %v", err)
	}
	spec, err := f.spec()
	if err != nil {
		return err
	}
	var in []byte
	switch {
	case *inline != "":
		in = []byte(*inline)
	case *input == "-":
		if isTerminal(os.Stdin) {
			fmt.Fprintln(os.Stderr, "gridnode run-local: reading the input from stdin (Ctrl-D ends it; use --in TEXT or --input FILE)")
		}
		in, err = io.ReadAll(os.Stdin)
	default:
		in, err = os.ReadFile(*input)
	}
	if err != nil {
		return fail(exitLocal, "read input: %v", err)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	sb, err := plugins.Open(ctx, plugins.Config{Dir: filepath.Join(base, "gridnode", "run-local"), Isolation: plugins.Isolation(*iso), Workers: 1, Logger: quietLogger(os.Stderr)})
	if err != nil {
		return fail(exitLocal, "open sandbox: %v", err)
	}
	defer sb.Close()
	hash, err := sb.AddModule(ctx, wasm)
	if err != nil {
		return fail(exitRefused, "%v", err)
	}
	lim, err := sb.Limits(sched.PluginLimits(spec.Policy.Limits))
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	filesDir := ""
	if f.files != "" {
		filesDir = f.files
	}
	name := spec.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(module), ".wasm")
	}
	out := sb.Execute(ctx, plugins.Task{
		Module: hash, ItemID: *itemID, Name: name, Input: in, Args: spec.Args, Env: spec.Env,
		FilesDir: filesDir, Limits: lim, Nondeterministic: spec.Policy.Nondeterministic,
	})
	if f.json {
		printJSON(struct {
			Status   string  `json:"status"`
			ExitCode uint32  `json:"exit_code"`
			Stdout   string  `json:"stdout"`
			Stderr   string  `json:"stderr"`
			Message  string  `json:"message,omitempty"`
			Digest   string  `json:"digest"`
			Seconds  float64 `json:"seconds"`
		}{string(out.Status), out.ExitCode, string(out.Stdout), string(out.Stderr), out.Message, string(out.Digest), out.Duration.Seconds()})
	} else {
		os.Stdout.Write(out.Stdout)
		os.Stderr.Write(out.Stderr)
		fmt.Fprintf(os.Stderr, "--- %s", out.Status)
		if out.Status == plugins.StatusExit {
			fmt.Fprintf(os.Stderr, " %d", out.ExitCode)
		}
		fmt.Fprintf(os.Stderr, " in %s, digest %s\n", out.Duration, out.Digest)
		if out.Message != "" {
			fmt.Fprintf(os.Stderr, "--- %s\n", out.Message)
		}
	}
	if out.Status != plugins.StatusOK {
		return &exitError{code: exitItemsFailed, err: errQuiet}
	}
	return nil
}
