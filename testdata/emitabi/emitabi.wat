;; emitabi: calls grid.emit at its limits and writes every return code as one
;; digit to stdout, so a test can check the raw ABI. The first byte of stdin
;; picks the scenario:
;;   n  1025 one-byte children: 1024 x "0", then "1" (too many)
;;   b  1 MiB + 1 bytes (2), four children of 1 MiB (0 0 0 0: exactly 4 MiB),
;;      1 more byte (2), an empty child (0): "2000020"
;;   p  out of memory: [end-1, end+1) (3), an empty child at end (0),
;;      ptr 0xffffffff (3), the last byte "z" (0): "3030"
;;   t  one child "z", then unreachable (a trap)
;; Anything else exits 2. Memory: 18 pages; byte 12 = input, codes from 1024,
;; children's bytes from 65536, "z" in the last byte.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))
  (import "grid" "emit" (func $emit (param i32 i32) (result i32)))

  (memory (export "memory") 18)
  (global $out (mut i32) (i32.const 1024))

  ;; emit [ptr, ptr+len) and append its return code as a digit.
  (func $try (param $ptr i32) (param $len i32)
    (i32.store8 (global.get $out)
      (i32.add (i32.const 48) (call $emit (local.get $ptr) (local.get $len))))
    (global.set $out (i32.add (global.get $out) (i32.const 1))))

  (func $_start (export "_start")
    (local $i i32)
    (local $end i32)
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (i32.store8 (i32.sub (local.get $end) (i32.const 1)) (i32.const 122)) ;; "z"
    ;; read one byte of input
    (i32.store (i32.const 0) (i32.const 12))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (block $done
      (if (i32.eq (i32.load8_u (i32.const 12)) (i32.const 110)) ;; n
        (then
          (loop $more
            (call $try (i32.const 65536) (i32.const 1))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $more (i32.lt_u (local.get $i) (i32.const 1025))))
          (br $done)))
      (if (i32.eq (i32.load8_u (i32.const 12)) (i32.const 98)) ;; b
        (then
          (call $try (i32.const 65536) (i32.const 1048577))
          (call $try (i32.const 65536) (i32.const 1048576))
          (call $try (i32.const 65536) (i32.const 1048576))
          (call $try (i32.const 65536) (i32.const 1048576))
          (call $try (i32.const 65536) (i32.const 1048576))
          (call $try (i32.const 65536) (i32.const 1))
          (call $try (i32.const 65536) (i32.const 0))
          (br $done)))
      (if (i32.eq (i32.load8_u (i32.const 12)) (i32.const 112)) ;; p
        (then
          (call $try (i32.sub (local.get $end) (i32.const 1)) (i32.const 2))
          (call $try (local.get $end) (i32.const 0))
          (call $try (i32.const -1) (i32.const 1))
          (call $try (i32.sub (local.get $end) (i32.const 1)) (i32.const 1))
          (br $done)))
      (if (i32.eq (i32.load8_u (i32.const 12)) (i32.const 116)) ;; t
        (then
          (call $try (i32.sub (local.get $end) (i32.const 1)) (i32.const 1))
          (unreachable)))
      (call $proc_exit (i32.const 2)))
    ;; write the codes
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.sub (global.get $out) (i32.const 1024)))
    (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
      (then (call $proc_exit (i32.const 1)))))
)
