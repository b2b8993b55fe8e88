// Command gohog allocates 1 MiB slices, touches every page of each and
// keeps them all, until the Go runtime can grow memory no further and dies
// ("fatal error: out of memory", non-zero exit). It is the Go-side
// counterpart of hostile/memhog.wat: the grid must bound its memory with
// the page limit and report the failure, not the node's.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -o gohog.wasm .
package main

import (
	"fmt"
	"os"
)

var keep [][]byte

func main() {
	for i := 1; ; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i)
		}
		keep = append(keep, b)
		if i%64 == 0 {
			fmt.Fprintf(os.Stderr, "gohog: holding %d MiB\n", i)
		}
	}
}
