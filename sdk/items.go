package sdk

import (
	"bufio"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/gridnode/gridnode/sdk/api"
)

// Items yields the given inputs, one item each.
func Items(inputs ...[]byte) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		for _, in := range inputs {
			if !yield(in, nil) {
				return
			}
		}
	}
}

// Range yields one item per integer in [lo, hi), its decimal text as input.
func Range(lo, hi int64) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		for i := lo; i < hi; i++ {
			if !yield(strconv.AppendInt(nil, i, 10), nil) {
				return
			}
		}
	}
}

// Lines yields one item per line of r, without its line ending. Lines are
// read as they are submitted: a file of a million lines is never all in
// memory.
func Lines(r io.Reader) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), api.MaxItemInput)
		for sc.Scan() {
			if !yield(append([]byte(nil), sc.Bytes()...), nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(nil, fmt.Errorf("sdk: read lines: %w (a line may be longer than the %d MiB item limit)", err, api.MaxItemInput>>20))
		}
	}
}

// DirFiles yields one item per regular file in dir, in name order, each
// file's bytes as input. Names lists the same files in the same order.
func DirFiles(dir string) (names []string, items iter.Seq2[[]byte, error], err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("sdk: read input dir: %w", err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	items = func(yield func([]byte, error) bool) {
		for _, n := range names {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err == nil && len(b) > api.MaxItemInput {
				err = fmt.Errorf("input file %s has %d bytes; the item limit is %d MiB", n, len(b), api.MaxItemInput>>20)
			}
			if !yield(b, err) || err != nil {
				return
			}
		}
	}
	return names, items, nil
}
