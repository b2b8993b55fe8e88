//go:build wasip1

// Command testguest is built by the plugins tests (GOOS=wasip1 GOARCH=wasm)
// to observe the job ABI from inside: clocks, randomness, args, env and files.
package main

import (
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"
)

//go:wasmimport grid progress
func progress(f float64)

func main() {
	start := time.Now()
	in, _ := io.ReadAll(os.Stdin)
	fmt.Printf("input=%s\n", in)
	fmt.Printf("wall=%d\n", time.Now().UnixNano())
	time.Sleep(10 * time.Millisecond)
	fmt.Printf("slept=%v\n", time.Since(start) >= 10*time.Millisecond)
	var b [16]byte
	crand.Read(b[:])
	fmt.Printf("crypto=%s\n", hex.EncodeToString(b[:]))
	fmt.Printf("mathrand=%d\n", rand.Uint64())
	fmt.Printf("args=%s\n", strings.Join(os.Args, ","))
	fmt.Printf("env=%s\n", strings.Join(os.Environ(), ","))
	job, err := os.ReadFile("/job/data.txt")
	fmt.Printf("job=%s err=%v\n", job, err != nil)
	err = os.WriteFile("/job/new.txt", []byte("x"), 0o644)
	fmt.Printf("jobwrite=%v\n", err == nil)
	before, _ := os.ReadDir("/tmp")
	fmt.Printf("tmpfiles=%d\n", len(before)) // 0: scratch starts empty for every execution
	err = os.WriteFile("/tmp/scratch.txt", []byte("scratch"), 0o644)
	back, _ := os.ReadFile("/tmp/scratch.txt")
	fmt.Printf("tmp=%v %s\n", err == nil, back)
	progress(0.25)
	progress(0.75)
	fmt.Fprintln(os.Stderr, "guest done")
}
