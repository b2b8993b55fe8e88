;; badimport: imports env.nonexistent and env.also_missing besides a WASI
;; function. Outcome: rejected before it runs (instantiation/link error that
;; names the missing imports), never retried as a transient failure.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "env" "nonexistent" (func $nonexistent (param i32) (result i32)))
  (import "env" "also_missing" (func $also_missing))
  (memory (export "memory") 1)
  (func $_start (export "_start")
    (drop (call $nonexistent (i32.const 1)))
    (call $also_missing))
)
