//go:build !gridnode_faults

package plugins

import "testing"

// Without the gridnode_faults tag the fault variable is never read: even a
// value that a fault build would refuse changes nothing.
func TestFaultEnvIgnoredWithoutTag(t *testing.T) {
	if FaultsBuilt() {
		t.Fatal("FaultsBuilt() = true without the gridnode_faults tag")
	}
	both(t, func(t *testing.T, iso Isolation) {
		for _, v := range []string{"1", "not a number"} {
			t.Setenv("GRIDNODE_FAULT_WRONG_OUTPUT", v)
			s := openSandbox(t, iso, "")
			echo := addTestdata(t, s, "echo/echo.wasm")
			o := execute(t, s, Task{Module: echo, ItemID: "1", Input: []byte("hello")})
			if o.Status != StatusOK || string(o.Stdout) != "hello" || o.Digest != computeDigest(&Outcome{Status: StatusOK, Stdout: []byte("hello")}) {
				t.Fatalf("GRIDNODE_FAULT_WRONG_OUTPUT=%q: status %s, stdout %q: the variable must have no effect", v, o.Status, o.Stdout)
			}
		}
	})
}
