package guest

import (
	"errors"
	"fmt"
)

// MaxCheckpoint is the largest checkpoint the grid accepts (plugins.MaxCheckpoint;
// repeated here because this package is compiled to wasm and must not import the host).
const MaxCheckpoint = 4 << 20

// SaveCheckpoint saves data as this execution's checkpoint: the state from
// which a later execution of the same item, by the same module, may resume
// if this one is interrupted (a deadline, a crash, a lost node). The grid
// keeps a copy, so data may be reused after the call. Each call replaces the
// previous checkpoint; LoadCheckpoint returns the latest.
//
// A checkpoint never changes the outcome: an execution that resumed must
// produce the same output as one that ran from the beginning, or honest
// duplicates will disagree. Save enough state to guarantee that, and save it
// every few seconds of work at most, not in a tight loop (at most 4 MiB).
//
// Outside wasip1 the checkpoint is kept in this process's memory, so that job
// code can be tested natively: save, then run the job function again and it
// resumes.
func SaveCheckpoint(data []byte) error {
	return saveCheckpointError(saveCheckpoint(data), len(data))
}

// LoadCheckpoint returns the checkpoint to resume from: the one the grid
// handed this execution, or the latest SaveCheckpoint of this execution.
// ok is false when there is none: start from the beginning. The data is the
// caller's to keep. Outside wasip1 it returns the latest SaveCheckpoint of
// this process.
func LoadCheckpoint() (data []byte, ok bool, err error) {
	buf := []byte{}
	for {
		n := loadCheckpoint(buf)
		switch {
		case n == -1:
			return nil, false, nil
		case n < 0:
			return nil, false, loadCheckpointError(n)
		case n <= int64(len(buf)):
			return buf[:n:n], true, nil
		case n > MaxCheckpoint:
			return nil, false, fmt.Errorf("guest: load checkpoint: the host offers %s, over the %s limit", fmtSize(n), fmtSize(MaxCheckpoint))
		}
		buf = make([]byte, n) // learned the size; the second call copies it
	}
}

// saveCheckpointError maps grid.checkpoint_save's return code for n bytes to an error.
func saveCheckpointError(code uint32, n int) error {
	switch code {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("guest: save checkpoint: checkpoint of %s exceeds the %s limit", fmtSize(int64(n)), fmtSize(MaxCheckpoint))
	case 3:
		return errors.New("guest: save checkpoint: the data is outside the module's memory")
	}
	return fmt.Errorf("guest: save checkpoint: the host returned unknown code %d", code)
}

func loadCheckpointError(code int64) error {
	if code == -3 {
		return errors.New("guest: load checkpoint: the buffer is outside the module's memory")
	}
	return fmt.Errorf("guest: load checkpoint: the host returned unknown code %d", code)
}

// fmtSize says n bytes the way a person reads it: "5 MiB", "4.5 MiB", "17 bytes".
func fmtSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n == 1:
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}
