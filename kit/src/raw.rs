//! The crate's only `unsafe` code: configuration bytes that outlive the
//! structures borrowing them, the proxy-wasm ABI (the host calls the kit
//! makes and the memory it lends the host), Higress's Redis host calls, and
//! the counting allocator of the zero-allocation tests.

use core::mem::ManuallyDrop;
use core::ptr::NonNull;

/// A value that borrows a byte buffer it owns.
///
/// The plugin's compiled configuration holds `&str` slices of the JSON bytes
/// the proxy handed over. Keeping both in one place needs a self-reference:
/// the bytes are moved to the heap (where they never move again), the value
/// is built from a `'static` view of them, and `Drop` drops the value
/// before freeing the bytes.
///
/// The `'static` never escapes: [`Retained::get`] lends the value only for
/// as long as `self` lives, and plugin code sees it through handlers that
/// are generic over the configuration's lifetime.
pub(crate) struct Retained<T> {
    value: ManuallyDrop<T>,
    bytes: NonNull<[u8]>,
}

impl<T> Retained<T> {
    /// Moves `bytes` to the heap and builds the value that borrows them.
    ///
    /// # Errors
    /// The error of `build`, after freeing the bytes; it cannot borrow them.
    pub(crate) fn new<E: 'static>(
        bytes: Vec<u8>,
        build: impl FnOnce(&'static mut [u8]) -> Result<T, E>,
    ) -> Result<Self, E> {
        let raw: *mut [u8] = Box::into_raw(bytes.into_boxed_slice());
        // SAFETY: `raw` comes from `Box::into_raw`, so it is valid, aligned
        // and unaliased; it is freed only below (on error, after `build`
        // returned an error that cannot borrow it) or in `Drop`, after the
        // value that borrows it is gone.
        let view: &'static mut [u8] = unsafe { &mut *raw };
        match build(view) {
            Ok(value) => Ok(Retained {
                value: ManuallyDrop::new(value),
                // SAFETY: `Box::into_raw` never returns null.
                bytes: unsafe { NonNull::new_unchecked(raw) },
            }),
            Err(e) => {
                // SAFETY: `build` is done and `E: 'static` holds no borrow of
                // `view`; this is the only free of `raw`.
                drop(unsafe { Box::from_raw(raw) });
                Err(e)
            }
        }
    }

    /// The value, for as long as `self` lives.
    pub(crate) fn get(&self) -> &T {
        &self.value
    }
}

impl<T> Drop for Retained<T> {
    fn drop(&mut self) {
        // SAFETY: the value is dropped exactly once, here, and before the
        // bytes it borrows; the bytes came from `Box::into_raw` in `new` and
        // are freed exactly once.
        unsafe {
            ManuallyDrop::drop(&mut self.value);
            drop(Box::from_raw(self.bytes.as_ptr()));
        }
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for Retained<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.value.fmt(f)
    }
}

/// The proxy-wasm ABI 0.2.1 host calls the kit uses, as safe functions
/// that report every status as an error instead of panicking, and the two
/// exports every module needs whatever its plugin.
///
/// # Values the host hands over
/// A host call that returns a value first asks the module for memory with
/// the export `proxy_on_memory_allocate`, writes the value there and
/// passes back its address. The kit lends the host the caller's own
/// buffer for that: [`read`] parks it in [`LENT`] for the duration of the
/// call, `proxy_on_memory_allocate` hands out its spare capacity, and the
/// value comes back inside the caller's buffer. Once the buffer has grown
/// to the largest value seen, reading a header or a body costs no
/// allocation, where proxy-wasm's allocator boxes every value.
///
/// Not with feature `proxy-wasm`: the SDK then owns these exports.
#[cfg(all(target_arch = "wasm32", not(feature = "proxy-wasm")))]
pub(crate) mod host_calls {
    use crate::abi::{status::NOT_FOUND, status::OK, MetricType, NO_GRPC_STATUS};
    use core::cell::Cell;
    use core::ptr::null_mut;

    /// A non-zero proxy-wasm status.
    pub(crate) type Status = u32;

    thread_local! {
        /// The buffer lent to the host during a value-returning host call.
        static LENT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    }

    /// The ABI version marker both upstream Envoy and Higress accept.
    #[no_mangle]
    pub extern "C" fn proxy_abi_version_0_2_1() {}

    /// Memory for a value the host is about to hand over: the spare
    /// capacity of the buffer [`read`] lent, grown if it is too small.
    /// Asked outside [`read`], it comes from an empty buffer, which the
    /// next [`read`] frees.
    #[no_mangle]
    pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
        LENT.with(|lent| {
            let mut buffer = lent.take();
            buffer.clear();
            buffer.reserve(size);
            let data = buffer.as_mut_ptr();
            lent.set(buffer);
            data
        })
    }

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
        fn proxy_get_log_level(return_level: *mut u32) -> u32;
        fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
        fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        fn proxy_get_buffer_bytes(
            buffer_type: u32,
            start: usize,
            max_size: usize,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> u32;
        fn proxy_set_buffer_bytes(
            buffer_type: u32,
            start: usize,
            size: usize,
            data: *const u8,
            data_size: usize,
        ) -> u32;
        fn proxy_get_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> u32;
        fn proxy_replace_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_remove_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
        ) -> u32;
        fn proxy_add_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> u32;
        fn proxy_continue_stream(stream_type: u32) -> u32;
        fn proxy_send_local_response(
            status_code: u32,
            details_data: *const u8,
            details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        fn proxy_http_call(
            upstream_data: *const u8,
            upstream_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            body_data: *const u8,
            body_size: usize,
            trailers_data: *const u8,
            trailers_size: usize,
            timeout_milliseconds: u32,
            return_token: *mut u32,
        ) -> u32;
        fn proxy_set_effective_context(context_id: u32) -> u32;
        fn proxy_define_metric(
            metric_type: u32,
            name_data: *const u8,
            name_size: usize,
            return_id: *mut u32,
        ) -> u32;
        fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    }

    /// The typed error of a failure status.
    pub(crate) fn host_error(status: Status) -> crate::host::HostError {
        use crate::abi::status::{BAD_ARGUMENT, UNIMPLEMENTED};
        use crate::host::HostError;
        match status {
            BAD_ARGUMENT => HostError::BadArgument,
            UNIMPLEMENTED => HostError::Unsupported,
            other => HostError::Status(other),
        }
    }

    pub(crate) fn status(code: u32) -> Result<(), Status> {
        if code == OK {
            Ok(())
        } else {
            Err(code)
        }
    }

    /// Runs a value-returning host call with `buffer` lent to the host;
    /// afterwards `buffer` holds the value. `Ok(false)`: no such value.
    ///
    /// `call` gets the two out-parameters the host writes: the value's
    /// address and size.
    fn read(
        buffer: &mut Vec<u8>,
        call: impl FnOnce(*mut *mut u8, *mut usize) -> u32,
    ) -> Result<bool, Status> {
        let (mut data, mut size) = (null_mut(), 0usize);
        LENT.with(|lent| lent.set(core::mem::take(buffer)));
        let code = call(&mut data, &mut size);
        *buffer = LENT.with(Cell::take);
        buffer.clear();
        match code {
            OK if size == 0 => Ok(true),
            OK if data == buffer.as_mut_ptr() && size <= buffer.capacity() => {
                // SAFETY: `data` is the start of `buffer`'s spare capacity,
                // handed out by `proxy_on_memory_allocate` during `call`,
                // and the host wrote `size` bytes there before returning;
                // `size` is within the capacity, checked above.
                unsafe { buffer.set_len(size) };
                Ok(true)
            }
            // Memory the kit did not hand out: nothing to read safely.
            OK => Err(OK),
            NOT_FOUND => Ok(false),
            other => Err(other),
        }
    }

    pub(crate) fn log(level: u32, message: &str) -> Result<(), Status> {
        // SAFETY: a live `&str`, only read by the host.
        status(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
    }

    pub(crate) fn log_level() -> Result<u32, Status> {
        let mut level = 0u32;
        // SAFETY: a valid `u32` the host writes once.
        status(unsafe { proxy_get_log_level(&mut level) })?;
        Ok(level)
    }

    pub(crate) fn now_nanos() -> Result<u64, Status> {
        let mut time = 0u64;
        // SAFETY: a valid `u64` the host writes once.
        status(unsafe { proxy_get_current_time_nanoseconds(&mut time) })?;
        Ok(time)
    }

    pub(crate) fn set_tick_period_ms(period: u32) -> Result<(), Status> {
        // SAFETY: no pointers.
        status(unsafe { proxy_set_tick_period_milliseconds(period) })
    }

    /// Bytes `[start, start + max)` of a buffer, into `out`.
    pub(crate) fn buffer(
        buffer_type: u32,
        start: usize,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, Status> {
        // SAFETY: valid out-parameters, written once by the host.
        read(out, |data, size| unsafe {
            proxy_get_buffer_bytes(buffer_type, start, max, data, size)
        })
    }

    pub(crate) fn set_buffer(
        buffer_type: u32,
        start: usize,
        size: usize,
        data: &[u8],
    ) -> Result<(), Status> {
        // SAFETY: a live slice, only read by the host.
        status(unsafe {
            proxy_set_buffer_bytes(buffer_type, start, size, data.as_ptr(), data.len())
        })
    }

    /// The value of header `key`, into `out`.
    pub(crate) fn header(map: u32, key: &str, out: &mut Vec<u8>) -> Result<bool, Status> {
        // SAFETY: a live key, only read; valid out-parameters.
        read(out, |data, size| unsafe {
            proxy_get_header_map_value(map, key.as_ptr(), key.len(), data, size)
        })
    }

    pub(crate) fn replace_header(map: u32, key: &str, value: &[u8]) -> Result<(), Status> {
        // SAFETY: live slices, only read by the host.
        status(unsafe {
            proxy_replace_header_map_value(
                map,
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
            )
        })
    }

    pub(crate) fn remove_header(map: u32, key: &str) -> Result<(), Status> {
        // SAFETY: a live key, only read by the host.
        status(unsafe { proxy_remove_header_map_value(map, key.as_ptr(), key.len()) })
    }

    pub(crate) fn add_header(map: u32, key: &str, value: &[u8]) -> Result<(), Status> {
        // SAFETY: live slices, only read by the host.
        status(unsafe {
            proxy_add_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len())
        })
    }

    /// A property, into `out`; `path` is the segments joined by NUL bytes.
    pub(crate) fn property(path: &[u8], out: &mut Vec<u8>) -> Result<bool, Status> {
        // SAFETY: a live path, only read; valid out-parameters.
        read(out, |data, size| unsafe {
            proxy_get_property(path.as_ptr(), path.len(), data, size)
        })
    }

    pub(crate) fn continue_stream(stream_type: u32) -> Result<(), Status> {
        // SAFETY: no pointers.
        status(unsafe { proxy_continue_stream(stream_type) })
    }

    /// `headers` is a serialized header map.
    pub(crate) fn send_local_response(
        status_code: u32,
        headers: &[u8],
        body: &[u8],
    ) -> Result<(), Status> {
        // SAFETY: live slices, only read by the host; no details string.
        status(unsafe {
            proxy_send_local_response(
                status_code,
                core::ptr::null(),
                0,
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                NO_GRPC_STATUS,
            )
        })
    }

    /// Starts an HTTP call; `headers` and `trailers` are serialized maps.
    pub(crate) fn http_call(
        cluster: &str,
        headers: &[u8],
        body: &[u8],
        trailers: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, Status> {
        let mut token = 0u32;
        // SAFETY: live slices, only read by the host; `token` is written once.
        status(unsafe {
            proxy_http_call(
                cluster.as_ptr(),
                cluster.len(),
                headers.as_ptr(),
                headers.len(),
                body.as_ptr(),
                body.len(),
                trailers.as_ptr(),
                trailers.len(),
                timeout_ms,
                &mut token,
            )
        })?;
        Ok(token)
    }

    pub(crate) fn set_effective_context(context_id: u32) -> Result<(), Status> {
        // SAFETY: no pointers.
        status(unsafe { proxy_set_effective_context(context_id) })
    }

    pub(crate) fn define_counter(name: &str) -> Result<u32, Status> {
        let mut id = 0u32;
        // SAFETY: a live name, only read; `id` is written once.
        status(unsafe {
            proxy_define_metric(
                MetricType::Counter.code(),
                name.as_ptr(),
                name.len(),
                &mut id,
            )
        })?;
        Ok(id)
    }

    pub(crate) fn increment_counter(id: u32, delta: i64) -> Result<(), Status> {
        // SAFETY: no pointers.
        status(unsafe { proxy_increment_metric(id, delta) })
    }
}

/// The `proxy-wasm` crate's dispatcher, entered from inside the module
/// (feature `proxy-wasm`): the one way to make it record the HTTP calls a
/// request's callback sends as a root context's.
///
/// The crate's `hostcalls::dispatch_http_call` files each call under the
/// context whose callback the dispatcher entered last, and delivers the
/// answer to that context only, dropping it once the context is deleted;
/// nothing public changes that context. Its export
/// `proxy_on_queue_ready(root, queue)` enters root context `root` (and
/// runs that root's `on_queue_ready`, which the kit's root leaves empty),
/// so calls sent after it, until the proxy's next callback, are filed under
/// the root, whose context lives as long as the configuration.
///
/// It costs one call inside the module, with a lookup in the crate's table
/// of roots, per request callback that sends calls.
#[cfg(all(target_arch = "wasm32", feature = "proxy-wasm"))]
pub(crate) mod sdk {
    extern "C" {
        /// Defined (`#[no_mangle]`) by the `proxy-wasm` crate's dispatcher;
        /// the linker resolves this declaration to it, inside the module.
        fn proxy_on_queue_ready(context_id: u32, queue_id: u32);
    }

    /// The queue id handed to the root's `on_queue_ready`, which ignores
    /// it: no queue is ready.
    const NO_QUEUE: u32 = 0;

    /// Makes the SDK's dispatcher file the calls sent from now until the
    /// proxy's next callback under root context `root_id`.
    ///
    /// The caller makes sure `root_id` is a root the dispatcher holds and
    /// that no root callback is running (the dispatcher holds its table of
    /// roots borrowed then, and would end the VM): the SDK adapter calls it
    /// from request callbacks only, while its root is alive.
    pub(crate) fn file_calls_under(root_id: u32) {
        // SAFETY: the declaration has the definition's signature (two u32s
        // by value, no result), and the definition is a safe Rust function
        // that reads no pointer.
        unsafe { proxy_on_queue_ready(root_id, NO_QUEUE) }
    }
}

/// Higress's Redis host calls (see `shared/REFERENCE.md`). Importing them
/// makes a module that upstream Envoy refuses to load, hence the feature.
#[cfg(all(
    feature = "higress",
    target_arch = "wasm32",
    not(feature = "proxy-wasm")
))]
pub(crate) mod higress {
    use crate::host::HostError;
    use core::time::Duration;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_redis_init(
            service_ptr: *const u8,
            service_len: usize,
            username_ptr: *const u8,
            username_len: usize,
            password_ptr: *const u8,
            password_len: usize,
            timeout_ms: u32,
        ) -> u32;
        fn proxy_redis_call(
            service_ptr: *const u8,
            service_len: usize,
            query_ptr: *const u8,
            query_len: usize,
            token_ptr: *mut u32,
        ) -> u32;
    }

    fn status(code: u32) -> Result<(), HostError> {
        super::host_calls::status(code).map_err(super::host_calls::host_error)
    }

    pub(crate) fn redis_init(
        cluster: &str,
        username: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<(), HostError> {
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        // SAFETY: every pointer/length pair describes a live `&str` for the
        // duration of the call; the host only reads them.
        status(unsafe {
            proxy_redis_init(
                cluster.as_ptr(),
                cluster.len(),
                username.as_ptr(),
                username.len(),
                password.as_ptr(),
                password.len(),
                timeout_ms,
            )
        })
    }

    pub(crate) fn redis_call(cluster: &str, command: &[u8]) -> Result<u32, HostError> {
        let mut token = 0u32;
        // SAFETY: the pointer/length pairs describe live slices the host only
        // reads; `token` is a valid `u32` the host writes once.
        status(unsafe {
            proxy_redis_call(
                cluster.as_ptr(),
                cluster.len(),
                command.as_ptr(),
                command.len(),
                &mut token,
            )
        })?;
        Ok(token)
    }
}

/// Whether the module counts its heap allocations (feature `heap-stats`,
/// wasm builds): the engine then publishes `<plugin>.heap_allocations`.
pub(crate) const HEAP_STATS: bool = cfg!(all(feature = "heap-stats", target_arch = "wasm32"));

/// Heap allocations since the last call (0 without [`HEAP_STATS`]). With
/// several roots in one module, the first to publish takes them all.
pub(crate) fn heap_allocations() -> u64 {
    #[cfg(all(feature = "heap-stats", target_arch = "wasm32"))]
    return heap_stats::ALLOCATIONS.swap(0, core::sync::atomic::Ordering::Relaxed);
    #[cfg(not(all(feature = "heap-stats", target_arch = "wasm32")))]
    0
}

/// Implements `GlobalAlloc` for `$allocator` by forwarding every call
/// unchanged to the allocator `$inner`, calling `$note()` before each
/// allocation and reallocation. `$note` must not allocate.
#[cfg(any(
    test,
    feature = "fake",
    all(feature = "heap-stats", target_arch = "wasm32")
))]
macro_rules! forward_counting {
    ($allocator:ty, $note:path, $inner:expr) => {
        // SAFETY: every call is forwarded unchanged to `$inner`; `$note`
        // does not allocate (see the caller).
        unsafe impl std::alloc::GlobalAlloc for $allocator {
            unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
                $note();
                // SAFETY: forwarded with the caller's layout.
                unsafe { $inner.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
                // SAFETY: forwarded with the caller's pointer and layout.
                unsafe { $inner.dealloc(ptr, layout) }
            }
            unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
                $note();
                // SAFETY: forwarded with the caller's layout.
                unsafe { $inner.alloc_zeroed(layout) }
            }
            unsafe fn realloc(
                &self,
                ptr: *mut u8,
                layout: std::alloc::Layout,
                new_size: usize,
            ) -> *mut u8 {
                $note();
                // SAFETY: forwarded with the caller's pointer, layout and size.
                unsafe { $inner.realloc(ptr, layout, new_size) }
            }
        }
    };
}

/// The module's heap: talc, not the C library's dlmalloc that Rust's
/// `System` allocator calls on WASI. Only configuration allocates (the
/// request path makes no allocation), so speed matters little here and
/// size does: talc is smaller once nothing else links dlmalloc (README
/// "Module size"). A proxy-wasm VM runs one thread, which is what
/// talc's lock-free wasm cell assumes. Plugins that bring their own
/// allocator turn off the kit's default feature `allocator`.
#[cfg(all(
    target_arch = "wasm32",
    feature = "allocator",
    not(feature = "heap-stats")
))]
#[global_allocator]
static HEAP: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// The module's heap in `heap-stats` builds: the same talc, counting every
/// allocation and reallocation, so that an end-to-end test can read from
/// the proxy's own stats that requests allocate nothing inside the real VM.
/// Not for production builds: it adds an atomic increment to every
/// allocation.
#[cfg(all(feature = "heap-stats", target_arch = "wasm32"))]
pub(crate) mod heap_stats {
    use core::sync::atomic::{AtomicU64, Ordering};

    pub(crate) static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

    static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

    /// Talc, counting.
    struct CountingHeap;

    #[global_allocator]
    static HEAP: CountingHeap = CountingHeap;

    fn note() {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }

    // The bookkeeping is one atomic add, which never allocates.
    forward_counting!(CountingHeap, note, TALC);
}

/// A global allocator that counts the allocations made on the current
/// thread while counting is on; see [`crate::fake::allocations_during`].
#[cfg(any(test, feature = "fake"))]
pub(crate) mod counting {
    use std::cell::Cell;

    /// Forwards to the system allocator, counting allocations.
    #[derive(Debug)]
    pub struct CountingAllocator;

    thread_local! {
        pub(crate) static COUNTING: Cell<bool> = const { Cell::new(false) };
        pub(crate) static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    fn note() {
        // `try_with`: the allocator also runs while thread locals are torn down.
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            }
        });
    }

    // The bookkeeping touches only const-initialised thread locals, which
    // never allocate.
    forward_counting!(CountingAllocator, note, std::alloc::System);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retained_value_borrows_its_bytes() {
        let kept = Retained::new(b"hello world".to_vec(), |bytes| {
            let s: &'static str = core::str::from_utf8(bytes).map_err(|_| "utf8")?;
            Ok::<_, &'static str>(s.split(' ').collect::<Vec<_>>())
        })
        .unwrap();
        assert_eq!(kept.get(), &["hello", "world"]);
    }

    #[test]
    fn failed_build_frees_bytes_and_returns_error() {
        let result = Retained::<()>::new(vec![1, 2, 3], |_| Err("nope"));
        assert_eq!(result.err(), Some("nope"));
    }
}
