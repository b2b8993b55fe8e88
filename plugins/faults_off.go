//go:build !gridnode_faults

package plugins

import "log/slog"

const faultsBuilt = false

// faults is empty without the gridnode_faults build tag: no code path reads
// the fault variables, so a production node cannot be told to lie.
type faults struct{}

func loadFaults() (faults, error) { return faults{}, nil }

func (faults) warn(*slog.Logger) {}

func (faults) apply(*Outcome, string) {}
