//go:build wasip1

package guest

// progress is provided by the gridnode host. Referencing it adds the
// import grid.progress to the module.
//
//go:wasmimport grid progress
func progress(fraction float64)
