;; divzero: integer division by zero. The divisor comes from a mutable
;; global so no compiler can fold it away. Outcome: trap (integer divide by
;; zero).
(module
  (memory (export "memory") 1)
  (global $zero (mut i32) (i32.const 0))
  (global $sink (mut i32) (i32.const 0))
  (func $divide (param $a i32) (param $b i32) (result i32)
    (i32.div_s (local.get $a) (local.get $b)))
  (func $_start (export "_start")
    (global.set $sink (call $divide (i32.const 1) (global.get $zero))))
)
