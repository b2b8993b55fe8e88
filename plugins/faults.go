package plugins

// FaultsBuilt reports whether this binary was built with -tags gridnode_faults,
// the only build in which fault injection (GRIDNODE_FAULT_WRONG_OUTPUT) can be
// switched on. Production builds return false: callers that take a fault flag
// should refuse it with a clear error instead of silently running honest.
func FaultsBuilt() bool { return faultsBuilt }
