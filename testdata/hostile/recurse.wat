;; recurse: loop-free exponential recursion. f(n) = n == 0 ? 0 : f(n-1)+f(n-1)+1,
;; called with n = 62: about 2^63 calls, stack depth only 62, no loop
;; instructions anywhere. Runs effectively forever without exhausting the
;; stack. Outcome: stopped at the deadline; a runtime that only checks for
;; interruption on loop back edges never gets the chance, so the execution
;; must be killable some other way.
(module
  (memory (export "memory") 1)
  (func $f (param $n i64) (result i64)
    (if (result i64) (i64.eqz (local.get $n))
      (then (i64.const 0))
      (else
        (i64.add
          (i64.add
            (call $f (i64.sub (local.get $n) (i64.const 1)))
            (call $f (i64.sub (local.get $n) (i64.const 1))))
          (i64.const 1)))))
  (func $_start (export "_start")
    (drop (call $f (i64.const 62))))
)
