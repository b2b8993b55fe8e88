;; echo: copies stdin to stdout until EOF, then exits 0.
;; The smallest useful job; used to measure per-item overhead.
;; On a read or write error it exits 1.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))

  ;; 0..7: iovec {ptr, len}; 8..11: nread/nwritten; 64 KiB buffer at 65536.
  (memory (export "memory") 2)

  (func $_start (export "_start")
    (local $n i32)
    (local $p i32)
    (loop $read
      (i32.store (i32.const 0) (i32.const 65536))
      (i32.store (i32.const 4) (i32.const 65536))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
        (then (call $proc_exit (i32.const 1))))
      (local.set $n (i32.load (i32.const 8)))
      (if (i32.eqz (local.get $n)) (then (return)))
      (local.set $p (i32.const 65536))
      ;; fd_write may be partial: loop until the whole chunk is out.
      (loop $write
        (i32.store (i32.const 0) (local.get $p))
        (i32.store (i32.const 4) (local.get $n))
        (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 1))))
        (local.set $p (i32.add (local.get $p) (i32.load (i32.const 8))))
        (local.set $n (i32.sub (local.get $n) (i32.load (i32.const 8))))
        (br_if $write (local.get $n)))
      (br $read)))
)
