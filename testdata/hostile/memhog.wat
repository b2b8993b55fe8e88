;; memhog: grows linear memory by 16 pages (1 MiB) at a time and writes one
;; byte into every new page, until memory.grow returns -1, then traps with
;; `unreachable`. Memory is declared without a maximum, so only the grid's
;; page limit stops it. Outcome: trap (unreachable) once the limit is hit,
;; with memory use bounded by that limit.
(module
  (memory (export "memory") 1)
  (func $_start (export "_start")
    (local $old i32)
    (local $page i32)
    (block $full
      (loop $grow
        (local.set $old (memory.grow (i32.const 16)))
        (br_if $full (i32.eq (local.get $old) (i32.const -1)))
        ;; Touch each new page so the host really backs it.
        (local.set $page (local.get $old))
        (loop $touch
          (i32.store8 (i32.shl (local.get $page) (i32.const 16)) (i32.const 1))
          (local.set $page (i32.add (local.get $page) (i32.const 1)))
          (br_if $touch (i32.lt_u (local.get $page) (i32.add (local.get $old) (i32.const 16)))))
        (br $grow)))
    unreachable)
)
