//! The crate's only `unsafe` code: configuration bytes that outlive the
//! structures borrowing them, Higress's Redis host calls, which
//! `proxy-wasm` does not declare, and the counting allocator of the
//! zero-allocation tests.

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

/// Higress's Redis host calls (see `shared/REFERENCE.md`). Importing them
/// makes a module that upstream Envoy refuses to load, hence the feature.
#[cfg(all(feature = "higress", target_arch = "wasm32"))]
pub(crate) mod higress {
    use crate::host::HostError;
    use core::time::Duration;

    /// `proxy-wasm` 0.2.5's `BufferType` stops at 8.
    const REDIS_CALL_RESPONSE: u32 = 9;

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
        fn proxy_get_buffer_bytes(
            buffer_type: u32,
            start: usize,
            max_size: usize,
            return_buffer_data: *mut *mut u8,
            return_buffer_size: *mut usize,
        ) -> u32;
    }

    fn status(code: u32) -> Result<(), HostError> {
        match code {
            0 => Ok(()),
            2 => Err(HostError::BadArgument),
            12 => Err(HostError::Unsupported),
            other => Err(HostError::Status(other)),
        }
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

    /// Copies out the reply of the Redis call being delivered.
    pub(crate) fn redis_reply(start: usize, len: usize) -> Option<Vec<u8>> {
        let mut data: *mut u8 = core::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer it allocated through this
        // module's `proxy_on_memory_allocate` (a boxed slice of `size`
        // bytes) and its size into the two out-parameters.
        let code = unsafe {
            proxy_get_buffer_bytes(REDIS_CALL_RESPONSE, start, len, &mut data, &mut size)
        };
        if code != 0 || data.is_null() {
            return None;
        }
        // SAFETY: `data` is the boxed slice of `size` bytes described above,
        // owned by us from now on and freed when the Vec drops.
        Some(unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(data, size)) }.into_vec())
    }
}

/// A global allocator that counts the allocations made on the current
/// thread while counting is on; see [`crate::fake::allocations_during`].
#[cfg(any(test, feature = "fake"))]
pub(crate) mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
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

    // SAFETY: every call is forwarded unchanged to the system allocator; the
    // bookkeeping touches only const-initialised thread locals, which never
    // allocate.
    unsafe impl GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note();
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded with the caller's pointer and layout.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note();
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note();
            // SAFETY: forwarded with the caller's pointer, layout and size.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
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
