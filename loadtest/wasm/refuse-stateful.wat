;; The cheapest refusal a filter that keeps per-request state can make: what
;; refuse.wat does, plus the three things any such filter pays for on every
;; request whatever its logic: it exports `proxy_on_response_headers` (a
;; filter that decorates answers needs it, so the host enters the VM again
;; for the local reply's headers) and `proxy_on_delete` (the only moment a
;; filter learns a request is gone, so the host enters the VM a third time),
;; and it reads the clock once (a time window needs the time). The load test
;; runs it beside refuse.wat and the limiter, so the limiter's flood cost
;; splits into what Envoy charges for those entries and what the limiter's
;; own code adds.
(module
  (import "env" "proxy_send_local_response"
    (func $respond (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds"
    (func $now (param i32) (result i32)))
  (memory (export "memory") 1)
  ;; Body at 1024 (17 bytes).
  (data (i32.const 1024) "Too many requests")
  ;; Header map at 2048 (94 bytes), as in refuse.wat.
  (data (i32.const 2048)
    "\03\00\00\00"
    "\11\00\00\00" "\02\00\00\00"
    "\15\00\00\00" "\01\00\00\00"
    "\11\00\00\00" "\02\00\00\00"
    "x-ratelimit-limit" "\00" "10" "\00"
    "x-ratelimit-remaining" "\00" "0" "\00"
    "x-ratelimit-reset" "\00" "42" "\00")
  (func (export "proxy_abi_version_0_2_1"))
  ;; Never asked: the module reads nothing from the host that needs memory.
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    ;; The clock, into 8 bytes at 4000.
    (drop (call $now (i32.const 4000)))
    (drop (call $respond (i32.const 429) (i32.const 0) (i32.const 0)
                         (i32.const 1024) (i32.const 17)
                         (i32.const 2048) (i32.const 94) (i32.const -1)))
    ;; StopIteration, as the kit answers after a local reply.
    (i32.const 1))
  ;; Continue: the local reply's headers pass unchanged.
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.const 0))
  (func (export "proxy_on_delete") (param i32))
)
