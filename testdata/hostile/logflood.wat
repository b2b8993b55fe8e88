;; logflood: writes 64 KiB chunks of "log line\n"-ish bytes to stderr
;; forever, ignoring write errors. Outcome: log capped (only a bounded tail
;; kept), item stopped at the deadline or failed with a log-limit error;
;; never unbounded host memory.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func $_start (export "_start")
    (memory.fill (i32.const 65536) (i32.const 108) (i32.const 65536)) ;; 'l'
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.const 65536))
    (loop $forever
      (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br $forever)))
)
