;; work: a CPU-bound item of tunable size (the "1 ms item" of the benchmarks).
;;
;; Input (stdin): a decimal N, ASCII digits only (1 to 19 of them), optionally
;; followed by "\n" or "\r\n".
;; Output (stdout): x as exactly 16 lowercase hex digits followed by "\n", where
;; (all arithmetic on uint64, wrapping):
;;
;;   x := N
;;   for i := uint64(0); i < N; i++ {
;;       x = x*6364136223846793005 + 1442695040888963407
;;       x ^= x >> 29
;;   }
;;
;; Examples: N=0 -> "0000000000000000", N=1 -> mix(1), see testdata/README.md.
;; Any other input (empty, non-digit, more than 19 digits, more than 64 bytes)
;; traps with `unreachable`. Imports only fd_read and fd_write.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))

  ;; 0..7: iovec; 8..11: count; 16..32: output text; 64..128: input buffer.
  (memory (export "memory") 1)

  ;; read_input reads all of stdin into [64, 128) and returns its length.
  (func $read_input (result i32)
    (local $len i32)
    (loop $more
      (i32.store (i32.const 0) (i32.add (i32.const 64) (local.get $len)))
      ;; One spare byte so that an over-long input is detected, not truncated.
      (i32.store (i32.const 4) (i32.sub (i32.const 65) (local.get $len)))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
        (then unreachable))
      (if (i32.load (i32.const 8))
        (then
          (local.set $len (i32.add (local.get $len) (i32.load (i32.const 8))))
          (if (i32.gt_u (local.get $len) (i32.const 64)) (then unreachable))
          (br $more))))
    (local.get $len))

  ;; parse parses [64, 64+len) as described above.
  (func $parse (param $len i32) (result i64)
    (local $i i32)
    (local $c i32)
    (local $n i64)
    ;; Strip one optional "\n", then one optional "\r".
    (if (i32.and (i32.gt_u (local.get $len) (i32.const 0))
                 (i32.eq (i32.load8_u offset=63 (local.get $len)) (i32.const 10)))
      (then (local.set $len (i32.sub (local.get $len) (i32.const 1)))))
    (if (i32.and (i32.gt_u (local.get $len) (i32.const 0))
                 (i32.eq (i32.load8_u offset=63 (local.get $len)) (i32.const 13)))
      (then (local.set $len (i32.sub (local.get $len) (i32.const 1)))))
    (if (i32.or (i32.eqz (local.get $len)) (i32.gt_u (local.get $len) (i32.const 19)))
      (then unreachable))
    (loop $digit
      (local.set $c (i32.sub (i32.load8_u offset=64 (local.get $i)) (i32.const 48)))
      (if (i32.gt_u (local.get $c) (i32.const 9)) (then unreachable))
      (local.set $n (i64.add (i64.mul (local.get $n) (i64.const 10))
                             (i64.extend_i32_u (local.get $c))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $digit (i32.lt_u (local.get $i) (local.get $len))))
    (local.get $n))

  (func $mix (param $n i64) (result i64)
    (local $x i64)
    (local $i i64)
    (local.set $x (local.get $n))
    (block $done
      (loop $round
        (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
        (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                               (i64.const 1442695040888963407)))
        (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 29))))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $round)))
    (local.get $x))

  (func $_start (export "_start")
    (local $x i64)
    (local $i i32)
    (local $d i32)
    (local $p i32)
    (local $n i32)
    (local.set $x (call $mix (call $parse (call $read_input))))
    ;; Hex digits, most significant first, into [16, 32); "\n" at 32.
    (loop $hex
      (local.set $d (i32.wrap_i64 (i64.and
        (i64.shr_u (local.get $x) (i64.extend_i32_u (i32.sub (i32.const 60) (i32.shl (local.get $i) (i32.const 2)))))
        (i64.const 15))))
      (i32.store8 offset=16 (local.get $i)
        (i32.add (local.get $d) (select (i32.const 48) (i32.const 87) (i32.lt_u (local.get $d) (i32.const 10)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $hex (i32.lt_u (local.get $i) (i32.const 16))))
    (i32.store8 (i32.const 32) (i32.const 10))
    (local.set $p (i32.const 16))
    (local.set $n (i32.const 17))
    (loop $write
      (i32.store (i32.const 0) (local.get $p))
      (i32.store (i32.const 4) (local.get $n))
      (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
        (then unreachable))
      (local.set $p (i32.add (local.get $p) (i32.load (i32.const 8))))
      (local.set $n (i32.sub (local.get $n) (i32.load (i32.const 8))))
      (br_if $write (local.get $n))))
)
