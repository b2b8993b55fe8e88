;; exit3: writes "bye\n" to stderr and exits with status 3.
;; A grid must report exit code 3 with the log "bye\n" and empty output.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\10\00\00\00\04\00\00\00") ;; iovec {16, 4}
  (data (i32.const 16) "bye\n")
  (func $_start (export "_start")
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.const 3)))
)
