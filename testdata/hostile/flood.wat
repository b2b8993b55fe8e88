;; flood: writes 64 KiB chunks of "y" to stdout forever, ignoring write
;; errors. Outcome: output cap enforced (item fails with an output-limit
;; error, or is stopped at the deadline) without the host buffering
;; unbounded data.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func $_start (export "_start")
    (memory.fill (i32.const 65536) (i32.const 121) (i32.const 65536))
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.const 65536))
    (loop $forever
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br $forever)))
)
