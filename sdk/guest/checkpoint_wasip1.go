//go:build wasip1

package guest

import (
	"math"
	"unsafe"
)

// gridCheckpointSave and gridCheckpointLoad are provided by the gridnode
// host. Referencing them adds the imports grid.checkpoint_save and
// grid.checkpoint_load to the module. The host copies [ptr, ptr+size) before
// checkpoint_save returns; checkpoint_load copies into [ptr, ptr+size) only
// when the payload fits capacity.
//
//go:wasmimport grid checkpoint_save
func gridCheckpointSave(ptr unsafe.Pointer, size uint32) uint32

//go:wasmimport grid checkpoint_load
func gridCheckpointLoad(ptr unsafe.Pointer, capacity uint32) int64

func saveCheckpoint(data []byte) uint32 {
	if uint64(len(data)) > math.MaxUint32 { // cannot fit a 32-bit memory; do not let the length wrap
		return 1
	}
	return gridCheckpointSave(unsafe.Pointer(unsafe.SliceData(data)), uint32(len(data)))
}

func loadCheckpoint(buf []byte) int64 {
	return gridCheckpointLoad(unsafe.Pointer(unsafe.SliceData(buf)), uint32(min(len(buf), math.MaxUint32)))
}
