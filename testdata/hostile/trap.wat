;; trap: writes "about to trap\n" to stderr, then executes `unreachable`
;; three calls deep ($_start -> $outer -> $inner). Built with --debug-names
;; so the trap's stack trace names the functions. Outcome: trap
;; (unreachable) with that log line and a stack naming $inner.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\10\00\00\00\0e\00\00\00") ;; iovec {16, 14}
  (data (i32.const 16) "about to trap\n")
  (func $inner
    unreachable)
  (func $outer
    (call $inner))
  (func $_start (export "_start")
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $outer))
)
