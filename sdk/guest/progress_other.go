//go:build !wasip1

package guest

// progress does nothing outside wasip1, so job code can be tested natively.
func progress(float64) {}
