;; A minimal proxy-wasm module for the host's own tests. `@ABI@`,
;; `@HEADERS@` (what the request-headers callback returns) and `@BODY@`
;; (what a body callback returns before the end of stream) are filled in by
;; the test; `@TICK_MS@` a tick period whose ticks resume a paused stream
;; (0: none). It logs what the host hands over so the test can check it:
;; the :path header (through proxy_on_memory_allocate), source.address, the
;; status of a missing property (as the log level), and each body
;; callback's body_size (as the log level).
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick_period (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  @EXTRA_IMPORT@
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $started (mut i32) (i32.const 0))
  (global $allocations (mut i32) (i32.const 0))
  (global $paused (mut i32) (i32.const 0))
  (data (i32.const 16) ":path")
  (data (i32.const 32) "source\00address")
  (data (i32.const 64) "no_such_property")
  (data (i32.const 96) "body")
  (func (export "@ABI@"))
  @ENTRY@
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (global.set $allocations (i32.add (global.get $allocations) (i32.const 1)))
    (local.set $p (global.get $heap))
    (global.set $heap
      (i32.and (i32.add (i32.add (global.get $heap) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  ;; Refuses its configuration unless the start functions ran in order.
  ;; With @TICK_MS@ > 0, a timer resumes the paused stream on each tick.
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (if (i32.gt_u (i32.const @TICK_MS@) (i32.const 0))
      (then (drop (call $tick_period (i32.const @TICK_MS@)))))
    (i32.eq (global.get $started) (i32.const 2)))
  (func (export "proxy_on_tick") (param $root i32)
    (if (global.get $paused)
      (then
        (drop (call $effective (global.get $paused)))
        (drop (call $continue (i32.const 0)))
        (global.set $paused (i32.const 0)))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (if (i32.eqz (call $get_header (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 1024) (i32.const 1028)))
      (then (drop (call $log (i32.const 2) (i32.load (i32.const 1024)) (i32.load (i32.const 1028))))))
    (if (i32.eqz (call $get_property (i32.const 32) (i32.const 14) (i32.const 1024) (i32.const 1028)))
      (then (drop (call $log (i32.const 2) (i32.load (i32.const 1024)) (i32.load (i32.const 1028))))))
    (drop (call $log
      (call $get_property (i32.const 64) (i32.const 16) (i32.const 1024) (i32.const 1028))
      (i32.const 64) (i32.const 16)))
    (global.set $paused (local.get $ctx))
    (i32.const @HEADERS@))
  (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (drop (call $log (local.get $size) (i32.const 96) (i32.const 4)))
    (if (result i32) (local.get $eos) (then (i32.const 0)) (else (i32.const @BODY@))))
)
