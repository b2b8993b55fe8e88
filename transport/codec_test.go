package transport

import (
	"bytes"
	"encoding/hex"
	"runtime"
	"strings"
	"testing"
	"time"
)

// sampleItem and sampleMsg stand for the messages other packages send:
// nested structs, maps, arrays and byte strings.
type sampleItem struct {
	Index    uint32       `cbor:"1,keyasint"`
	Input    []byte       `cbor:"2,keyasint"`
	Children []sampleItem `cbor:"3,keyasint,omitempty"`
}

type sampleMsg struct {
	ID     string              `cbor:"1,keyasint"`
	N      int64               `cbor:"2,keyasint"`
	Data   []byte              `cbor:"3,keyasint"`
	Labels map[string]string   `cbor:"4,keyasint"`
	Items  []sampleItem        `cbor:"5,keyasint"`
	Index  map[string][]uint32 `cbor:"6,keyasint"`
	Err    *Error              `cbor:"7,keyasint"`
	Flag   bool                `cbor:"8,keyasint"`
	Ratio  float64             `cbor:"9,keyasint"`
	When   time.Time           `cbor:"10,keyasint"`
	Extra  any                 `cbor:"11,keyasint"`
}

func sample() sampleMsg {
	return sampleMsg{
		ID: "job-1", N: -42, Data: []byte{0, 1, 2},
		Labels: map[string]string{"zone": "a", "host": "h1"},
		Items:  []sampleItem{{Index: 1, Input: []byte("x"), Children: []sampleItem{{Index: 2}}}},
		Index:  map[string][]uint32{"b": {1, 2}, "a": nil},
		Err:    Errorf(CodeNotFound, "gone"),
		Flag:   true, Ratio: 0.5,
		When:  time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), // times travel as whole seconds
		Extra: []any{uint64(1), "two"},
	}
}

func TestCodecRoundTripCanonical(t *testing.T) {
	in := sample()
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out sampleMsg
	if err := Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	b2, err := Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("encoding is not stable:\n%x\n%x", b, b2)
	}
	if !out.When.Equal(in.When) || out.Labels["zone"] != "a" || out.Err.Code != CodeNotFound || string(out.Items[0].Input) != "x" {
		t.Fatalf("round trip lost data: %+v", out)
	}
	// Map order must not depend on insertion order.
	m1, _ := Marshal(map[string]int{"a": 1, "bb": 2, "c": 3})
	m2, _ := Marshal(map[string]int{"c": 3, "a": 1, "bb": 2})
	if !bytes.Equal(m1, m2) {
		t.Fatal("map encoding depends on insertion order")
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCodecStrictRejects(t *testing.T) {
	deep := bytes.Repeat([]byte{0x81}, maxNestedLevels+1) // [[[[...]]]]
	deep = append(deep, 0x00)
	cases := []struct {
		name string
		data []byte
		into func() any
		want string
	}{
		{"duplicate map key", mustHex(t, "a2 6161 01 6161 02"), func() any { return new(map[string]int) }, "duplicate"},
		{"duplicate struct key", mustHex(t, "a2 01 6161 01 6162"), func() any { return new(sampleMsg) }, "duplicate"},
		{"indefinite array", mustHex(t, "9f 01 02 ff"), func() any { return new([]int) }, "indefinite"},
		{"indefinite byte string", mustHex(t, "5f 41 00 ff"), func() any { return new([]byte) }, "indefinite"},
		{"indefinite map", mustHex(t, "bf 6161 01 ff"), func() any { return new(map[string]int) }, "indefinite"},
		{"tag", mustHex(t, "c1 1a 5e 00 00 00"), func() any { return new(any) }, "tag"},
		{"deep nesting", deep, func() any { return new(any) }, "exceeded max nested level"},
		{"wrong type: string into int", mustHex(t, "a1 02 6161"), func() any { return new(sampleMsg) }, "cannot unmarshal"},
		{"wrong type: array into map", mustHex(t, "a1 04 80"), func() any { return new(sampleMsg) }, "cannot unmarshal"},
		{"trailing bytes", mustHex(t, "01 02"), func() any { return new(int) }, "extraneous"},
		{"huge declared byte string", mustHex(t, "5b 4000000000000000 00"), func() any { return new([]byte) }, "EOF"},
		{"huge declared array", mustHex(t, "9b 4000000000000000 00"), func() any { return new([]int) }, ""},
		{"array over the element cap", append(mustHex(t, "9a 00200000"), make([]byte, 1<<21)...), func() any { return new([]int) }, "exceeded max number of elements"},
		{"huge declared map", mustHex(t, "bb 4000000000000000 00"), func() any { return new(map[string]int) }, ""},
		{"invalid utf-8", mustHex(t, "62 ff fe"), func() any { return new(string) }, "UTF-8"},
		{"empty input", nil, func() any { return new(int) }, "EOF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Unmarshal(tc.data, tc.into())
			if err == nil {
				t.Fatalf("accepted %x", tc.data)
			}
			if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// Declared lengths are not trusted: decoding a few bytes that claim 2^62
// elements must cost about nothing.
func TestCodecHugeDeclaredLengthsDoNotAllocate(t *testing.T) {
	inputs := [][]byte{
		mustHex(t, "5b 4000000000000000 00"),
		mustHex(t, "9b 4000000000000000 00"),
		mustHex(t, "bb 4000000000000000 00"),
		mustHex(t, "7b 4000000000000000 00"),
		mustHex(t, "a1 03 5a 7fffffff 00"),
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 100 {
		for _, in := range inputs {
			var v sampleMsg
			if Unmarshal(in, &v) == nil {
				t.Fatalf("accepted %x", in)
			}
			var a any
			if Unmarshal(in, &a) == nil {
				t.Fatalf("accepted %x", in)
			}
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Fatalf("1000 rejected decodes allocated %d bytes", grew)
	}
}

func TestCodecUnknownFieldsIgnored(t *testing.T) {
	b, _ := Marshal(map[int]any{1: "id", 99: "future field"})
	var m sampleMsg
	if err := Unmarshal(b, &m); err != nil || m.ID != "id" {
		t.Fatalf("got %+v, %v", m, err)
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Marshal(sample())
	f.Add(good)
	empty, _ := Marshal(sampleMsg{})
	f.Add(empty)
	for _, s := range []string{
		"a2 6161 01 6161 02", "9f 01 02 ff", "c1 1a 5e 00 00 00", "5b 4000000000000000 00",
		"a1 05 81 a1 03 81 a1 03 80", "a1 0b a1 41 00 f6", "a1 09 f9 7e 00", "a1 06 a1 61 61 82 01 02",
	} {
		b, _ := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m sampleMsg
		if err := Unmarshal(data, &m); err != nil {
			return
		}
		// Whatever we accept, we can send again, and it stays put.
		b1, err := Marshal(m)
		if err != nil {
			t.Fatalf("accepted %x but cannot re-encode it: %v", data, err)
		}
		var m2 sampleMsg
		if err := Unmarshal(b1, &m2); err != nil {
			t.Fatalf("cannot decode our own encoding %x: %v", b1, err)
		}
		b2, err := Marshal(m2)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("encoding not stable: %x vs %x (%v)", b1, b2, err)
		}
	})
}
