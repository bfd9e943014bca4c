//! Building pre-order outboards (the hash tree above the 16 KiB chunk groups) and finding which
//! groups of a partial blob are valid.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::path::Path;

use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::io::sync::{outboard, OutboardMut};
use bao_tree::{BaoTree, ChunkRanges as Ranges, TreeNode};
use memmap2::MmapMut;
use pyo3::prelude::*;

use crate::error::{Error, Result};
use crate::ranges::ChunkRanges;
use crate::BLOCK_SIZE;

/// How often (in bytes hashed) the progress callback is called.
const PROGRESS_EVERY: u64 = 64 << 20;
const READ_BUFFER: usize = 1 << 20;

pub fn tree(size: u64) -> BaoTree {
    BaoTree::new(size, BLOCK_SIZE)
}

/// An outboard being written into a memory map of its file: node writes cost a memcpy, not a
/// syscall each, and memory stays bounded by the page cache rather than the process.
struct MmapOutboard {
    tree: BaoTree,
    map: Option<MmapMut>,
}

impl OutboardMut for MmapOutboard {
    fn save(&mut self, node: TreeNode, pair: &(blake3::Hash, blake3::Hash)) -> io::Result<()> {
        let (Some(offset), Some(map)) = (self.tree.pre_order_offset(node), self.map.as_mut())
        else {
            return Ok(());
        };
        let at = (offset * 64) as usize;
        map[at..at + 32].copy_from_slice(pair.0.as_bytes());
        map[at + 32..at + 64].copy_from_slice(pair.1.as_bytes());
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.map.as_ref().map_or(Ok(()), |m| m.flush())
    }
}

/// A reader that reports how far it got, and stops when the callback raises.
struct Progress<'py, R> {
    inner: R,
    done: u64,
    total: u64,
    next_report: u64,
    callback: Option<&'py Py<PyAny>>,
    failure: Option<PyErr>,
}

impl<R: Read> Progress<'_, R> {
    fn report(&mut self) -> io::Result<()> {
        let Some(cb) = self.callback else {
            return Ok(());
        };
        let (done, total) = (self.done, self.total);
        if let Err(e) = Python::attach(|py| cb.call1(py, (done, total))) {
            self.failure = Some(e);
            return Err(io::Error::other("cancelled by the progress callback"));
        }
        Ok(())
    }
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done >= self.next_report {
            self.next_report = self.done + PROGRESS_EVERY;
            self.report()?;
        }
        Ok(n)
    }
}

fn create_file_outboard(
    data: &Path,
    target: &Path,
    callback: Option<&Py<PyAny>>,
) -> Result<(blake3::Hash, u64)> {
    let file = File::open(data)?;
    let size = file.metadata()?.len();
    let tree = tree(size);
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(target)?;
    out.set_len(tree.outboard_size())?;
    let map = if tree.outboard_size() > 0 {
        // SAFETY: the outboard file was just created by us; nothing else maps or truncates it.
        Some(unsafe { MmapMut::map_mut(&out)? })
    } else {
        None
    };
    let mut reader = Progress {
        inner: BufReader::with_capacity(READ_BUFFER, file),
        done: 0,
        total: size,
        next_report: PROGRESS_EVERY,
        callback,
        failure: None,
    };
    let mut ob = MmapOutboard { tree, map };
    let result = outboard(&mut reader, tree, &mut ob);
    if let Some(e) = reader.failure.take() {
        return Err(Error::Python(e));
    }
    match result {
        Ok(root) => {
            ob.sync()?;
            drop(ob);
            out.sync_data()?;
            reader.done = size;
            reader.report()?;
            Ok((root, size))
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(Error::integrity(
            format!("{} shrank while it was being hashed", data.display()),
            None,
        )),
        Err(e) => Err(e.into()),
    }
}

/// Builds the pre-order outboard of file `data` into file `outboard` (replacing it), with the
/// GIL released; `progress(done, total)` is called every 64 MiB and at the end, and stops the
/// work if it raises. Returns the BLAKE3 root and the size hashed.
#[pyfunction]
#[pyo3(signature = (data, outboard, progress = None))]
pub fn create_outboard(
    py: Python<'_>,
    data: std::path::PathBuf,
    outboard: std::path::PathBuf,
    progress: Option<Py<PyAny>>,
) -> Result<(Vec<u8>, u64)> {
    let (root, size) = py.detach(|| create_file_outboard(&data, &outboard, progress.as_ref()))?;
    Ok((root.as_bytes().to_vec(), size))
}

/// The root and pre-order outboard of an in-memory blob.
#[pyfunction]
pub fn outboard_from_bytes(py: Python<'_>, data: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    py.detach(|| {
        let tree = tree(data.len() as u64);
        let mut ob = PreOrderOutboard::<Vec<u8>> {
            tree,
            ..Default::default()
        };
        ob.data = vec![0u8; tree.outboard_size() as usize];
        let root = outboard(data, tree, &mut ob)?;
        Ok((root.as_bytes().to_vec(), ob.data))
    })
}

/// The chunks of a (possibly partial) blob whose data verify through its outboard to `root`.
#[pyfunction]
pub fn valid_ranges(
    py: Python<'_>,
    data: std::path::PathBuf,
    outboard: std::path::PathBuf,
    root: &[u8],
    size: u64,
) -> Result<ChunkRanges> {
    let root = crate::parse_root(root)?;
    py.detach(|| {
        let data = File::open(data)?;
        let ob = PreOrderOutboard {
            root,
            tree: tree(size),
            data: File::open(outboard)?,
        };
        let mut valid = Ranges::empty();
        for range in bao_tree::io::sync::valid_ranges(ob, data, &Ranges::all()) {
            valid |= Ranges::from(range?);
        }
        Ok(ChunkRanges::new(valid))
    })
}
