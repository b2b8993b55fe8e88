//go:build !wasip1

package guest

import "sync"

// Outside wasip1 there is no host: the checkpoint lives in process memory,
// with the grid's size limit, so that job code can be tested natively.
var offGrid struct {
	sync.Mutex
	data []byte // nil: none
}

func saveCheckpoint(data []byte) uint32 {
	if len(data) > MaxCheckpoint {
		return 1
	}
	offGrid.Lock()
	defer offGrid.Unlock()
	offGrid.data = append([]byte{}, data...)
	return 0
}

func loadCheckpoint(buf []byte) int64 {
	offGrid.Lock()
	defer offGrid.Unlock()
	if offGrid.data == nil {
		return -1
	}
	n := len(offGrid.data)
	if n <= len(buf) {
		copy(buf, offGrid.data)
	}
	return int64(n)
}
