package plugins

import (
	"context"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"
)

// callGuard makes loop-free recursion interruptible in the calling process.
//
// WithCloseOnContextDone only makes compiled code check for a closed module at
// the header of every wasm loop (wazero RATIONALE.md, "Why context cancellation
// is handled in Go code rather than native code"; the check is emitted for
// OpcodeLoop in the compiler frontend). A module that recurses without loops
// never reaches a check, and because native code cannot be preempted by the Go
// scheduler it also blocks every stop-the-world GC of the process: the whole
// node would hang. A function listener runs Go code before every call, which
// gives both a check point and a preemption point. It costs an exit to Go per
// call, which is why only in-process isolation uses it; worker processes are
// simply killed.
type callGuard struct{}

func (callGuard) NewFunctionListener(api.FunctionDefinition) experimental.FunctionListener {
	return guardListener{}
}

type guardListener struct{}

func (guardListener) Before(_ context.Context, mod api.Module, _ api.FunctionDefinition, _ []uint64, _ experimental.StackIterator) {
	if mod.IsClosed() {
		panic(sys.NewExitError(sys.ExitCodeDeadlineExceeded))
	}
}

func (guardListener) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {}

func (guardListener) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}
