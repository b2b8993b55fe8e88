package plugins

import (
	crand "crypto/rand"
	"crypto/sha256"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// virtualEpoch is what the guest's wall clock reads at the start of every
// deterministic execution: 2000-01-01T00:00:00Z.
var virtualEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// clockTick is how far the virtual clock advances on every read, so that two
// reads never return the same instant and busy-wait loops make progress.
const clockTick = int64(time.Microsecond)

// virtualClock is the deterministic time of one execution. The monotonic clock
// starts at 0 and the wall clock at virtualEpoch; both advance by clockTick per
// read and by the requested duration on nanosleep (which returns at once).
type virtualClock struct{ ns atomic.Int64 }

func (c *virtualClock) nanotime() int64 { return c.ns.Add(clockTick) }

func (c *virtualClock) walltime() (sec int64, nsec int32) {
	t := virtualEpoch.Add(time.Duration(c.ns.Add(clockTick)))
	return t.Unix(), int32(t.Nanosecond())
}

func (c *virtualClock) nanosleep(ns int64) {
	if ns > 0 {
		c.ns.Add(ns)
	}
}

// seededRand is the guest's random source: ChaCha8 keyed by
// sha256("gridnode/plugins rand v1\x00" ‖ itemID).
func seededRand(itemID string) *rand.ChaCha8 {
	return rand.NewChaCha8(sha256.Sum256([]byte("gridnode/plugins rand v1\x00" + itemID)))
}

// cryptoRand is the random source of a nondeterministic execution.
type cryptoRand struct{}

func (cryptoRand) Read(p []byte) (int, error) { return crand.Read(p) }
