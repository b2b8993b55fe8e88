package plugins

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// Raw is the benchmark baseline: plain wazero with the compiler engine, the
// module compiled once and instantiated per run with stdin/stdout buffers.
// No limits, no isolation, no determinism, no classification.
type Raw struct {
	rt wazero.Runtime
	cm wazero.CompiledModule
}

// NewRaw compiles wasm in a fresh runtime.
func NewRaw(ctx context.Context, wasm []byte) (*Raw, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	_, err := wasi_snapshot_preview1.Instantiate(ctx, rt)
	if err == nil { // modules built with the guest SDK import grid.progress and grid.emit
		_, err = rt.NewHostModuleBuilder("grid").
			NewFunctionBuilder().WithFunc(func(float64) {}).Export("progress").
			NewFunctionBuilder().WithFunc(func(uint32, uint32) uint32 { return 0 }).Export("emit"). // accepts and drops children
			Instantiate(ctx)
	}
	if err != nil {
		rt.Close(ctx)
		return nil, err
	}
	cm, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	return &Raw{rt: rt, cm: cm}, nil
}

// Run instantiates the module with input on stdin and returns its stdout.
// A non-zero exit is an error.
func (r *Raw) Run(ctx context.Context, input []byte) ([]byte, error) {
	var out bytes.Buffer
	cfg := wazero.NewModuleConfig().WithName("").WithArgs("job").WithStdin(bytes.NewReader(input)).WithStdout(&out)
	mod, err := r.rt.InstantiateModule(ctx, r.cm, cfg)
	if mod != nil {
		mod.Close(ctx)
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 0 {
		err = nil
	}
	return out.Bytes(), err
}

// Close releases the runtime.
func (r *Raw) Close(ctx context.Context) error { return r.rt.Close(ctx) }
