;; ckptabi: calls grid.checkpoint_save and grid.checkpoint_load at their
;; limits and writes every return code, in decimal followed by a space, so a
;; test can check the raw ABI. The first byte of stdin picks the scenario:
;;   s  without a task checkpoint:
;;        load(0, 0)                 -1  no checkpoint yet
;;        save(0, 4 MiB + 1)          1  too large
;;        save(0, 0xffffffff)         1  too large (checked before bounds)
;;        save(end-1, 2)              3  outside memory
;;        save(0xffffffff, 1)         3  outside memory
;;        save(end, 0)                0  an empty checkpoint
;;        load(0, 0)                  0  its size
;;        save(end-2, 2)              0  "ok"
;;        load(0, 0)                  2  its size, nothing copied
;;        load(0xffffffff, 1)         2  too small a buffer: no copy, no bounds check
;;        load(end-1, 2)             -3  fits, but outside memory
;;        load(2048, 2)               2  copies "ok" to 2048
;;      then the 2 bytes at 2048: "-1 1 1 3 3 0 0 0 2 2 -3 2 ok"
;;   r  resume: n = load(2048, 64); writes n; if n >= 0, saves [2048, 2048+n)
;;      again, writes its code and the payload: "2 0 hi" for a task
;;      checkpoint "hi", "-1 " without one
;;   t  saves "ok", then traps (unreachable)
;; Anything else exits 2. Memory: 65 pages (4 MiB + 1 page); byte 12 = input,
;; codes from 1024, "ok" in the last two bytes.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))
  (import "grid" "checkpoint_save" (func $save (param i32 i32) (result i32)))
  (import "grid" "checkpoint_load" (func $load (param i32 i32) (result i64)))

  (memory (export "memory") 65)
  (global $out (mut i32) (i32.const 1024))

  (func $byte (param $b i32)
    (i32.store8 (global.get $out) (local.get $b))
    (global.set $out (i32.add (global.get $out) (i32.const 1))))

  ;; put appends a code in -9..9 as decimal and a space.
  (func $put (param $code i64)
    (if (i64.lt_s (local.get $code) (i64.const 0))
      (then
        (call $byte (i32.const 45)) ;; "-"
        (local.set $code (i64.sub (i64.const 0) (local.get $code)))))
    (call $byte (i32.add (i32.const 48) (i32.wrap_i64 (local.get $code))))
    (call $byte (i32.const 32)))

  (func $try_save (param $ptr i32) (param $len i32)
    (call $put (i64.extend_i32_u (call $save (local.get $ptr) (local.get $len)))))

  (func $try_load (param $ptr i32) (param $cap i32)
    (call $put (call $load (local.get $ptr) (local.get $cap))))

  ;; copy appends [ptr, ptr+len) to the output.
  (func $copy (param $ptr i32) (param $len i32)
    (memory.copy (global.get $out) (local.get $ptr) (local.get $len))
    (global.set $out (i32.add (global.get $out) (local.get $len))))

  (func $_start (export "_start")
    (local $end i32)
    (local $n i64)
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (i32.store8 (i32.sub (local.get $end) (i32.const 2)) (i32.const 111)) ;; "o"
    (i32.store8 (i32.sub (local.get $end) (i32.const 1)) (i32.const 107)) ;; "k"
    ;; read one byte of input
    (i32.store (i32.const 0) (i32.const 12))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (block $done
      (if (i32.eq (i32.load8_u (i32.const 12)) (i32.const 115)) ;; s
        (then
          (call $try_load (i32.const 0) (i32.const 0))
          (call $try_save (i32.const 0) (i32.const 4194305))
          (call $try_save (i32.const 0) (i32.const -1))
          (call $try_save (i32.sub (local.get $end) (i32.const 1)) (i32.const 2))
          (call $try_save (i32.const -1) (i32.const 1))
          (call $try_save (local.get $end) (i32.const 0))
          (call $try_load (i32.const 0) (i32.const 0))
          (call $try_save (i32.sub (local.get $end) (i32.const 2)) (i32.const 2))
          (call $try_load (i32.const 0) (i32.const 0))
          (call $try_load (i32.const -1) (i32.const 1))
          (call $try_load (i32.sub (local.get $end) (i32.const 1)) (i32.const 2))
          (call $try_load (i32.const 2048) (i32.const 2))
          (call $copy (i32.const 2048) (i32.const 2))
          (br $done)))
      (if (i32.eq (i32.load8_u (i32.const 12)) (i32.const 114)) ;; r
        (then
          (local.set $n (call $load (i32.const 2048) (i32.const 64)))
          (call $put (local.get $n))
          (br_if $done (i64.lt_s (local.get $n) (i64.const 0)))
          (call $try_save (i32.const 2048) (i32.wrap_i64 (local.get $n)))
          (call $copy (i32.const 2048) (i32.wrap_i64 (local.get $n)))
          (br $done)))
      (if (i32.eq (i32.load8_u (i32.const 12)) (i32.const 116)) ;; t
        (then
          (drop (call $save (i32.sub (local.get $end) (i32.const 2)) (i32.const 2)))
          (unreachable)))
      (call $proc_exit (i32.const 2)))
    ;; write the output
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.sub (global.get $out) (i32.const 1024)))
    (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
      (then (call $proc_exit (i32.const 1)))))
)
