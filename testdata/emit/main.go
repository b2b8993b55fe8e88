// Command emit is a job module that fans out with the guest SDK's Emit, to
// test staged child items.
//
// Input "parent N" (N decimal) emits N children with the inputs
// "child 0" … "child N-1" and writes "parent N emitted N\n"; N above 1024
// fails at the 1025th Emit and exits 1 with the SDK's error on stderr.
// Input "child I" writes "child I " + the first 8 bytes of sha256("child I")
// in lowercase hex + "\n" (testdata.EmitChildOutput is its native twin).
// Numbers are canonical decimal (no sign, no leading zeros); one trailing
// "\n" or "\r\n" is ignored. Anything else exits 1 with the reason on stderr.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -o emit.wasm .
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/gridnode/gridnode/sdk/guest"
)

func main() {
	guest.Run(func(input []byte) ([]byte, error) {
		s := strings.TrimSuffix(strings.TrimSuffix(string(input), "\n"), "\r")
		kind, num, _ := strings.Cut(s, " ")
		n, err := strconv.ParseUint(num, 10, 32)
		if err != nil || strconv.FormatUint(n, 10) != num || (kind != "parent" && kind != "child") {
			return nil, fmt.Errorf("emit: want input \"parent N\" or \"child I\" (decimal), got %q", truncate(s))
		}
		if kind == "child" {
			sum := sha256.Sum256([]byte(s))
			return fmt.Appendf(nil, "%s %s\n", s, hex.EncodeToString(sum[:8])), nil
		}
		for i := range n {
			if err := guest.Emit(fmt.Appendf(nil, "child %d", i)); err != nil {
				return nil, fmt.Errorf("emit: child %d: %w", i, err)
			}
		}
		return fmt.Appendf(nil, "parent %d emitted %d\n", n, n), nil
	})
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
