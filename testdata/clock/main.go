// Command clock prints what a module can observe of time, randomness, args,
// env and job files, one "key=value" per line. It uses no gridnode SDK, to
// show that any wasip1 program is a job module. Under the grid's default
// deterministic mode, two runs of the same item print identical bytes.
//
//	wall=<time.Now().UnixNano()>
//	mono=<ns measured around a 10ms time.Sleep>
//	rand=<math/rand/v2 Uint64 from the default source>
//	crypto=<8 bytes from crypto/rand, hex>
//	args=<os.Args[1:] joined by one space>
//	env=<$GREETING>
//	file=<contents of /job/hello.txt without a trailing newline, or "none">
//
// Build: GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -o clock.wasm .
package main

import (
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"
)

func main() {
	fmt.Printf("wall=%d\n", time.Now().UnixNano())
	start := time.Now()
	time.Sleep(10 * time.Millisecond)
	fmt.Printf("mono=%d\n", time.Since(start).Nanoseconds())
	fmt.Printf("rand=%d\n", rand.Uint64())
	var b [8]byte
	crand.Read(b[:]) // never fails (Go 1.24+); a broken source crashes the program
	fmt.Printf("crypto=%s\n", hex.EncodeToString(b[:]))
	fmt.Printf("args=%s\n", strings.Join(os.Args[1:], " "))
	fmt.Printf("env=%s\n", os.Getenv("GREETING"))
	file := "none"
	if data, err := os.ReadFile("/job/hello.txt"); err == nil {
		file = strings.TrimSuffix(string(data), "\n")
	}
	fmt.Printf("file=%s\n", file)
}
