//go:build gridnode_faults

package plugins

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"strconv"
)

// This file exists only in binaries built with -tags gridnode_faults, to test
// the grid's vote with real disagreement. Never ship such a binary.

const faultsBuilt = true

// faultWrongOutputEnv makes a share of the ok executions return a wrong but
// well-formed outcome: its value is the probability in [0, 1].
const faultWrongOutputEnv = "GRIDNODE_FAULT_WRONG_OUTPUT"

// faultSuffix is appended to the stdout of a corrupted execution.
const faultSuffix = "\x00faulty"

type faults struct {
	wrongOutput float64 // probability that an item's ok outcome is corrupted; 0 = never
}

func loadFaults() (faults, error) {
	v, ok := os.LookupEnv(faultWrongOutputEnv)
	if !ok || v == "" {
		return faults{}, nil
	}
	p, err := strconv.ParseFloat(v, 64)
	if err != nil || !(p >= 0 && p <= 1) {
		return faults{}, fmt.Errorf("plugins: %s=%q: want a probability between 0 and 1", faultWrongOutputEnv, v)
	}
	return faults{wrongOutput: p}, nil
}

func (f faults) warn(log *slog.Logger) {
	if f.wrongOutput > 0 {
		log.Warn("FAULT INJECTION ACTIVE: this node corrupts the output of some executions on purpose; a test build, never use it in production",
			"env", faultWrongOutputEnv, "probability", f.wrongOutput)
	}
}

// apply corrupts an ok outcome when the item is one of the faulty ones: its
// stdout gets faultSuffix and its digest is recomputed, so it looks like an
// honest result that disagrees with the others. The choice hashes the item
// ID, so this node is consistently wrong for the same item.
func (f faults) apply(o *Outcome, itemID string) {
	if o.Status != StatusOK || !faultyItem(itemID, f.wrongOutput) {
		return
	}
	o.Stdout = append(o.Stdout[:len(o.Stdout):len(o.Stdout)], faultSuffix...)
	o.seal()
}

// faultyItem maps the item ID to a uniform u in [0, 1) and reports u < p.
func faultyItem(itemID string, p float64) bool {
	if p <= 0 {
		return false
	}
	sum := sha256.Sum256([]byte("gridnode/plugins fault v1\x00" + itemID))
	u := float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
	return u < p
}
