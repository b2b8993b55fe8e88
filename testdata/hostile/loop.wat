;; loop: spins forever in _start. Outcome: stopped at the deadline
;; (cooperative interruption works here: the loop has a back edge).
(module
  (memory (export "memory") 1)
  (func $_start (export "_start")
    (loop $forever (br $forever)))
)
