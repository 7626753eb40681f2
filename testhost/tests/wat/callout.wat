;; A proxy-wasm module that asks an authorisation service with
;; proxy_http_call on each request and waits: a scripted answer is sent back
;; to the client as a 403 with the answer's body; a failed call (no
;; headers) lets the request go on. It logs the call's status.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call"
    (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $respond (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $stream (mut i32) (i32.const 0))
  ;; :method GET, :path /, :authority auth, encoded as header pairs.
  (data (i32.const 128)
    "\03\00\00\00"
    "\07\00\00\00\03\00\00\00" "\05\00\00\00\01\00\00\00" "\0a\00\00\00\04\00\00\00"
    ":method\00GET\00:path\00/\00:authority\00auth\00")
  (data (i32.const 200) "outbound|80||auth.static")
  (data (i32.const 300) "ping")
  (data (i32.const 320) "call")
  (data (i32.const 400) "\00\00\00\00")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap
      (i32.and (i32.add (i32.add (global.get $heap) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (local $status i32)
    (global.set $stream (local.get $ctx))
    (local.set $status
      (call $http_call (i32.const 200) (i32.const 24) (i32.const 128) (i32.const 64)
        (i32.const 300) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 1040)))
    (drop (call $log (local.get $status) (i32.const 320) (i32.const 4)))
    (if (result i32) (i32.eqz (local.get $status)) (then (i32.const 1)) (else (i32.const 0))))
  (func (export "proxy_on_http_call_response")
    (param $root i32) (param $token i32) (param $headers i32) (param $size i32) (param $trailers i32)
    (drop (call $effective (global.get $stream)))
    (if (i32.eqz (local.get $headers))
      (then (drop (call $continue (i32.const 0))))
      (else
        (drop (call $get_buffer (i32.const 4) (i32.const 0) (local.get $size) (i32.const 1024) (i32.const 1028)))
        (drop (call $respond (i32.const 403) (i32.const 0) (i32.const 0)
          (i32.load (i32.const 1024)) (i32.load (i32.const 1028))
          (i32.const 400) (i32.const 4) (i32.const -1))))))
)
