package transport

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Limits of the strict decode mode. They bound what a hostile peer can make
// us allocate or recurse into, independently of the frame cap.
const (
	maxNestedLevels  = 16
	maxArrayElements = 1 << 20
	maxMapPairs      = 1 << 16
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	eo := cbor.CoreDetEncOptions() // canonical: sorted keys, shortest forms, definite lengths
	// Times are untagged integers of seconds since the epoch. An RFC 3339
	// string cannot carry a year past 9999, which a peer can send as a
	// number (we would accept a time we could not send back), and float
	// seconds do not survive a round trip (a fraction that rounds away
	// re-encodes as an integer). Anything that needs finer time on the
	// wire carries a time.Duration or its own integer.
	eo.Time = cbor.TimeUnix
	eo.TagsMd = cbor.TagsForbidden
	eo.IndefLength = cbor.IndefLengthForbidden
	var err error
	if encMode, err = eo.EncMode(); err != nil {
		panic(fmt.Sprintf("transport: cbor encode options: %v", err))
	}
	do := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   maxNestedLevels,
		MaxArrayElements:  maxArrayElements,
		MaxMapPairs:       maxMapPairs,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
	}
	if decMode, err = do.DecMode(); err != nil {
		panic(fmt.Sprintf("transport: cbor decode options: %v", err))
	}
}

// Marshal encodes v as canonical CBOR. Tags are never produced (time.Time is
// a number of seconds), so everything Marshal writes, Unmarshal reads.
func Marshal(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("transport: encode %T: %w", v, err)
	}
	return b, nil
}

// Unmarshal decodes exactly one CBOR item from data into v with the strict
// mode: duplicate map keys, indefinite lengths, tags, trailing bytes, nesting
// deeper than 16 and oversized arrays or maps are all errors. Unknown struct
// fields are ignored so that messages can grow.
func Unmarshal(data []byte, v any) error {
	if err := decMode.Unmarshal(data, v); err != nil {
		return fmt.Errorf("transport: decode %T: %w", v, err)
	}
	return nil
}
