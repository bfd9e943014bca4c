//! Building pre-order outboards (the hash tree above the 16 KiB chunk groups) and finding which
//! groups of a partial blob are valid.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::io::sync::outboard;
use bao_tree::iter::BaoChunk;
use bao_tree::{BaoTree, ChunkRanges as Ranges, TreeNode};
use memmap2::MmapMut;
use pyo3::prelude::*;
use smallvec::SmallVec;

use crate::error::{at, tagged, Error, Result};
use crate::hash::{hash_subtree, parent_cv};
use crate::ranges::ChunkRanges;
use crate::BLOCK_SIZE;

/// How often (in bytes hashed) the progress callback is called.
const PROGRESS_EVERY: u64 = 64 << 20;
/// Data is read in blocks of this size (a whole number of chunk groups) and hashed in place.
const READ_BUFFER: usize = 1 << 20;
/// Blocks in flight between the reading thread and the hashing one.
const BLOCKS: usize = 4;

pub fn tree(size: u64) -> BaoTree {
    BaoTree::new(size, BLOCK_SIZE)
}

/// An outboard being written into a memory map of its file: node writes cost a memcpy, not a
/// syscall each, and memory stays bounded by the page cache rather than the process.
struct MmapOutboard {
    tree: BaoTree,
    map: Option<MmapMut>,
}

impl MmapOutboard {
    fn save(&mut self, node: TreeNode, pair: &(blake3::Hash, blake3::Hash)) {
        let (Some(offset), Some(map)) = (self.tree.pre_order_offset(node), self.map.as_mut())
        else {
            return;
        };
        let at = (offset * 64) as usize;
        map[at..at + 32].copy_from_slice(pair.0.as_bytes());
        map[at + 32..at + 64].copy_from_slice(pair.1.as_bytes());
    }

    fn sync(&mut self) -> io::Result<()> {
        self.map.as_ref().map_or(Ok(()), |m| m.flush())
    }
}

/// Reports progress to an optional Python callback; an exception it raises stops the work.
struct Progress<'a> {
    callback: Option<&'a Py<PyAny>>,
    total: u64,
    next_report: u64,
}

impl Progress<'_> {
    fn report(&mut self, done: u64) -> Result<()> {
        if let Some(cb) = self.callback {
            let total = self.total;
            Python::attach(|py| cb.call1(py, (done, total)))?;
        }
        Ok(())
    }

    fn maybe_report(&mut self, done: u64) -> Result<()> {
        if done >= self.next_report {
            self.next_report = done + PROGRESS_EVERY;
            self.report(done)?;
        }
        Ok(())
    }
}

/// Reads `file` sequentially on a second thread, in blocks that are a whole number of chunk
/// groups, so that the kernel's copy overlaps with hashing; blocks come back for reuse.
fn with_blocks<T>(
    mut file: &File,
    path: &Path,
    size: u64,
    consume: impl FnOnce(&mut dyn FnMut(Vec<u8>) -> Result<Option<Block>>) -> Result<T>,
) -> Result<T> {
    let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<Block>>(BLOCKS);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..BLOCKS {
        empty_tx
            .send(vec![0u8; READ_BUFFER])
            .expect("receiver alive");
    }
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut remaining = size;
            while remaining > 0 {
                let Ok(mut buf) = empty_rx.recv() else { return };
                let len = remaining.min(READ_BUFFER as u64) as usize;
                let result = file
                    .read_exact(&mut buf[..len])
                    .map(|()| Block { buf, len });
                let failed = result.is_err();
                if full_tx.send(result).is_err() || failed {
                    return;
                }
                remaining -= len as u64;
            }
        });
        let recycle = empty_tx.clone();
        let mut next = move |done_with: Vec<u8>| -> Result<Option<Block>> {
            if !done_with.is_empty() {
                let _ = recycle.send(done_with);
            }
            match full_rx.recv() {
                Ok(Ok(block)) => Ok(Some(block)),
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Err(Error::integrity(
                    "the file shrank while it was being hashed",
                    None,
                )),
                Ok(Err(e)) => Err(at(path)(e)),
                Err(_) => Ok(None),
            }
        };
        let result = consume(&mut next);
        // Hang up both channels so that the reader stops even when we stopped early.
        drop(next);
        drop(empty_tx);
        result
    })
}

pub struct Block {
    buf: Vec<u8>,
    len: usize,
}

/// Hashes `file` in post-order, saving each parent into `ob`; each chunk group is hashed where
/// it lies in the block that was read.
fn hash_into(
    file: &File,
    path: &Path,
    tree: BaoTree,
    ob: &mut MmapOutboard,
    progress: &mut Progress<'_>,
) -> Result<blake3::Hash> {
    with_blocks(file, path, tree.size(), |next_block| {
        let mut stack: SmallVec<[blake3::Hash; 64]> = SmallVec::new();
        let mut block = Block {
            buf: Vec::new(),
            len: 0,
        };
        let (mut used, mut done) = (0usize, 0u64);
        for item in tree.post_order_chunks_iter() {
            match item {
                BaoChunk::Parent { is_root, node, .. } => {
                    let right = stack
                        .pop()
                        .expect("post-order gives two children per parent");
                    let left = stack
                        .pop()
                        .expect("post-order gives two children per parent");
                    ob.save(node, &(left, right));
                    stack.push(parent_cv(&left, &right, is_root));
                }
                BaoChunk::Leaf {
                    size,
                    is_root,
                    start_chunk,
                    ..
                } => {
                    if used == block.len && size > 0 {
                        block = next_block(std::mem::take(&mut block.buf))?.ok_or_else(|| {
                            Error::integrity("the file shrank while it was being hashed", None)
                        })?;
                        used = 0;
                        progress.maybe_report(done)?;
                    }
                    let data = &block.buf[used..used + size];
                    stack.push(hash_subtree(start_chunk.0, data, is_root));
                    used += size;
                    done += size as u64;
                }
            }
        }
        Ok(stack.pop().expect("the root remains"))
    })
}

fn create_file_outboard(
    data: &Path,
    target: &Path,
    callback: Option<&Py<PyAny>>,
) -> Result<(blake3::Hash, u64)> {
    let file = File::open(data).map_err(at(data))?;
    let size = file.metadata().map_err(at(data))?.len();
    let tree = tree(size);
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(target)
        .map_err(at(target))?;
    out.set_len(tree.outboard_size()).map_err(at(target))?;
    let map = if tree.outboard_size() > 0 {
        // SAFETY: the outboard file was just created by us; nothing else maps or truncates it.
        Some(unsafe { MmapMut::map_mut(&out).map_err(at(target))? })
    } else {
        None
    };
    let mut progress = Progress {
        callback,
        total: size,
        next_report: PROGRESS_EVERY,
    };
    let mut ob = MmapOutboard { tree, map };
    let root = hash_into(&file, data, tree, &mut ob, &mut progress)?;
    ob.sync().map_err(at(target))?;
    drop(ob);
    out.sync_data().map_err(at(target))?;
    progress.report(size)?;
    Ok((root, size))
}

/// Builds the pre-order outboard of file `data` into file `outboard` (replacing it), with the
/// GIL released; `progress(done, total)` is called every 64 MiB and at the end, and stops the
/// work if it raises. Returns the BLAKE3 root and the size hashed.
#[pyfunction]
#[pyo3(signature = (data, outboard, progress = None))]
pub fn create_outboard(
    py: Python<'_>,
    data: PathBuf,
    outboard: PathBuf,
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
        let root = outboard(data, tree, &mut ob).map_err(Error::untag)?;
        Ok((root.as_bytes().to_vec(), ob.data))
    })
}

/// The chunks of a (possibly partial) blob whose data verify through its outboard to `root`.
#[pyfunction]
pub fn valid_ranges(
    py: Python<'_>,
    data: PathBuf,
    outboard: PathBuf,
    root: &[u8],
    size: u64,
) -> Result<ChunkRanges> {
    let root = crate::parse_root(root)?;
    py.detach(|| {
        let ob = PreOrderOutboard {
            root,
            tree: tree(size),
            data: Named::open(&outboard)?,
        };
        let mut valid = Ranges::empty();
        for range in bao_tree::io::sync::valid_ranges(ob, Named::open(&data)?, &Ranges::all()) {
            valid |= Ranges::from(range.map_err(Error::untag)?);
        }
        Ok(ChunkRanges::new(valid))
    })
}

/// A file whose read errors carry its path through bao-tree's `io::Result`s.
struct Named<'a> {
    file: File,
    path: &'a Path,
}

impl<'a> Named<'a> {
    fn open(path: &'a Path) -> Result<Self> {
        let file = File::open(path).map_err(at(path))?;
        Ok(Named { file, path })
    }
}

impl positioned_io::ReadAt for Named<'_> {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        FileExt::read_at(&self.file, buf, pos).map_err(|e| tagged(self.path, e))
    }
}
