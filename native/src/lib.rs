//! `ringdrop._native`: BLAKE3/bao verified streaming with 16 KiB chunk groups (bao-tree block
//! size 4, as iroh uses). Errors cross into Python as the classes of `ringdrop.errors`.

mod decoder;
mod encoder;
mod error;
mod hash;
mod outboard;
mod ranges;
mod verify;

use bao_tree::BlockSize;
use pyo3::prelude::*;

use crate::error::{Error, Result};

/// 16 chunks of 1 KiB per chunk group. Not on the wire: both sides must agree on it.
pub const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);
pub const GROUP_CHUNKS: u64 = 16;
pub const GROUP_SIZE: u64 = 16 * 1024;

pub fn parse_root(root: &[u8]) -> Result<blake3::Hash> {
    let bytes: [u8; 32] = root
        .try_into()
        .map_err(|_| Error::Value(format!("a root hash has 32 bytes, not {}", root.len())))?;
    Ok(blake3::Hash::from(bytes))
}

/// Size in bytes of the pre-order outboard of a blob of `size` bytes.
#[pyfunction]
fn outboard_size(size: u64) -> u64 {
    outboard::tree(size).outboard_size()
}

/// Number of 16 KiB chunk groups of a blob of `size` bytes.
#[pyfunction]
fn group_count(size: u64) -> u64 {
    ranges::groups(size)
}

/// Has the C allocator keep the memory a process frees for its next allocations (glibc only;
/// elsewhere it does nothing and returns False). A transfer allocates and frees buffers of up to
/// a few MiB all the time, and by default glibc maps each one of over 128 KiB afresh, or hands
/// the freed top of a heap back to the kernel: either way the next buffer's every page faults
/// in again and is zeroed, about a tenth of a fresh sender's CPU in its first transfer (README,
/// issue 28's fifth pass). For a program
/// that owns its process, not for a library: the peak memory stays what it was, but it is
/// handed back only when the process ends.
#[pyfunction]
fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Up to 64 MiB free at a heap's top stays mapped; allocations under 32 MiB come from
        // the heaps, whose freed memory is reused. SAFETY: mallopt only sets the allocator's
        // parameters; it may be called at any time.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20) == 1
                && libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CHUNK_SIZE", 1024)?;
    m.add("GROUP_SIZE", GROUP_SIZE)?;
    m.add_class::<ranges::ChunkRanges>()?;
    m.add_class::<encoder::Encoder>()?;
    m.add_class::<decoder::Decoder>()?;
    m.add_function(wrap_pyfunction!(outboard_size, m)?)?;
    m.add_function(wrap_pyfunction!(group_count, m)?)?;
    m.add_function(wrap_pyfunction!(keep_freed_memory, m)?)?;
    m.add_function(wrap_pyfunction!(outboard::create_outboard, m)?)?;
    m.add_function(wrap_pyfunction!(outboard::outboard_from_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(outboard::valid_ranges, m)?)?;
    m.add_function(wrap_pyfunction!(outboard::outboard_chains, m)?)?;
    Ok(())
}
