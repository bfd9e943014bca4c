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

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CHUNK_SIZE", 1024)?;
    m.add("GROUP_SIZE", GROUP_SIZE)?;
    m.add_class::<ranges::ChunkRanges>()?;
    m.add_class::<encoder::Encoder>()?;
    m.add_class::<decoder::Decoder>()?;
    m.add_function(wrap_pyfunction!(outboard_size, m)?)?;
    m.add_function(wrap_pyfunction!(group_count, m)?)?;
    m.add_function(wrap_pyfunction!(outboard::create_outboard, m)?)?;
    m.add_function(wrap_pyfunction!(outboard::outboard_from_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(outboard::valid_ranges, m)?)?;
    m.add_function(wrap_pyfunction!(outboard::outboard_chains, m)?)?;
    Ok(())
}
