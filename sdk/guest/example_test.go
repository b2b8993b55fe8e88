package guest_test

import (
	"bytes"

	"github.com/gridnode/gridnode/sdk/guest"
)

// A module that upper-cases its input. Run reads stdin, so this example is
// compiled but not run by go test.
func ExampleRun() {
	guest.Run(func(input []byte) ([]byte, error) {
		guest.Logf("got %d bytes", len(input))
		guest.Progress(1)
		return bytes.ToUpper(input), nil
	})
}
