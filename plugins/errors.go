package plugins

import "errors"

// Sentinel errors. Every error returned by this package that falls in one of
// these classes wraps the sentinel, so callers test with errors.Is.
var (
	// ErrInvalidModule: the bytes are not a WebAssembly core module wazero can compile.
	ErrInvalidModule = errors.New("plugins: invalid module")
	// ErrMissingImport: the module imports something the grid does not provide.
	ErrMissingImport = errors.New("plugins: missing import")
	// ErrModuleNotFound: no module with that hash is stored on this node.
	ErrModuleNotFound = errors.New("plugins: module not found")
	// ErrLimit: a requested limit is above the node's maximum or otherwise invalid.
	ErrLimit = errors.New("plugins: limit refused")
	// ErrCheckpoint: a sealed checkpoint was refused (see OpenCheckpoint).
	ErrCheckpoint = errors.New("plugins: checkpoint refused")
	// ErrClosed: the Sandbox was closed.
	ErrClosed = errors.New("plugins: sandbox closed")
)
