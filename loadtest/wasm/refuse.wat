;; The cheapest refusal a Wasm filter can make: on every request's headers,
;; one local 429 with the limiter's three quota headers and body, and
;; nothing else. No configuration, no clock, no state, two exported
;; callbacks. The load test runs it beside the limiter's flood path, so the
;; cost of answering from Wasm at all is measured apart from the limiter's.
(module
  (import "env" "proxy_send_local_response"
    (func $respond (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; Body at 1024 (17 bytes).
  (data (i32.const 1024) "Too many requests")
  ;; Header map at 2048 (94 bytes): the count, each name's and value's
  ;; length (little-endian u32), then each name and value NUL-terminated.
  (data (i32.const 2048)
    "\03\00\00\00"
    "\11\00\00\00" "\02\00\00\00"
    "\15\00\00\00" "\01\00\00\00"
    "\11\00\00\00" "\02\00\00\00"
    "x-ratelimit-limit" "\00" "10" "\00"
    "x-ratelimit-remaining" "\00" "0" "\00"
    "x-ratelimit-reset" "\00" "42" "\00")
  (func (export "proxy_abi_version_0_2_1"))
  ;; Never asked: the module reads nothing from the host.
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $respond (i32.const 429) (i32.const 0) (i32.const 0)
                         (i32.const 1024) (i32.const 17)
                         (i32.const 2048) (i32.const 94) (i32.const -1)))
    ;; StopIteration, as the kit answers after a local reply.
    (i32.const 1))
)
