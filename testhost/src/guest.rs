//! Reading and writing the guest's linear memory from a host call, and
//! handing bytes over the way proxy-wasm does: the host asks the guest for
//! memory (reentrantly, inside the host call), copies, and writes the
//! pointer and length where the guest said.

use wasmtime::{Caller, Memory};

use crate::abi::status;
use crate::state::HostState;

/// Why a host call stops early: a status for the guest, or a trap.
#[derive(Debug)]
pub enum Fault {
    Status(i32),
    Trap(wasmtime::Error),
}

impl From<wasmtime::Error> for Fault {
    fn from(e: wasmtime::Error) -> Self {
        Fault::Trap(e)
    }
}

/// What a host call body returns.
pub type Outcome<T = ()> = Result<T, Fault>;

/// Turns a host call's outcome into its ABI result: 0, a status, or a trap.
pub fn finish(outcome: Outcome) -> wasmtime::Result<i32> {
    match outcome {
        Ok(()) => Ok(status::OK),
        Err(Fault::Status(s)) => Ok(s),
        Err(Fault::Trap(e)) => Err(e),
    }
}

fn memory(caller: &mut Caller<'_, HostState>) -> Outcome<Memory> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or(Fault::Status(status::INVALID_MEMORY_ACCESS))
}

fn range(ptr: i32, len: i32) -> Outcome<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start
        .checked_add(len as u32 as usize)
        .ok_or(Fault::Status(status::INVALID_MEMORY_ACCESS))?;
    Ok(start..end)
}

/// Copies `len` bytes at `ptr` out of the guest.
///
/// # Errors
/// Invalid memory access when the range is outside linear memory.
pub fn read(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Outcome<Vec<u8>> {
    let mem = memory(caller)?;
    let r = range(ptr, len)?;
    mem.data(&*caller)
        .get(r)
        .map(<[u8]>::to_vec)
        .ok_or(Fault::Status(status::INVALID_MEMORY_ACCESS))
}

/// Reads a UTF-8 string (lossily: hostile bytes never stop the host).
pub fn read_string(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Outcome<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

/// Writes `bytes` at `ptr`.
///
/// # Errors
/// Invalid memory access when the range is outside linear memory.
pub fn write(caller: &mut Caller<'_, HostState>, ptr: i32, bytes: &[u8]) -> Outcome {
    let mem = memory(caller)?;
    let r = range(ptr, bytes.len() as i32)?;
    mem.data_mut(&mut *caller)
        .get_mut(r)
        .ok_or(Fault::Status(status::INVALID_MEMORY_ACCESS))?
        .copy_from_slice(bytes);
    Ok(())
}

/// Writes a little-endian u32 at `ptr`.
pub fn write_u32(caller: &mut Caller<'_, HostState>, ptr: i32, value: u32) -> Outcome {
    write(caller, ptr, &value.to_le_bytes())
}

/// Writes a little-endian u64 at `ptr`.
pub fn write_u64(caller: &mut Caller<'_, HostState>, ptr: i32, value: u64) -> Outcome {
    write(caller, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the guest: memory from its allocator, the copy, then the
/// pointer at `ret_ptr` and the length at `ret_size`. Empty values are
/// handed over as pointer 0 and length 0 without asking for memory, as
/// Envoy does (a Go guest's allocator cannot return a zero-length block).
///
/// # Errors
/// Invalid memory access for a bad return address; a trap from the guest's
/// allocator; internal failure when the guest exports no allocator or
/// returns null.
pub fn hand_over(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    ret_ptr: i32,
    ret_size: i32,
) -> Outcome {
    let ptr = if bytes.is_empty() {
        0
    } else {
        let alloc = caller
            .data()
            .allocate
            .clone()
            .ok_or(Fault::Status(status::INTERNAL_FAILURE))?;
        let ptr = alloc.call(&mut *caller, bytes.len() as i32)?;
        if ptr == 0 {
            return Err(Fault::Status(status::INTERNAL_FAILURE));
        }
        write(caller, ptr, bytes)?;
        ptr
    };
    write_u32(caller, ret_ptr, ptr as u32)?;
    write_u32(caller, ret_size, bytes.len() as u32)
}
