//! Building pre-order outboards (the hash tree above the 16 KiB chunk groups) and finding which
//! groups of a partial blob are valid.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::io::sync::outboard;
use bao_tree::iter::BaoChunk;
use bao_tree::{BaoTree, ChunkNum, ChunkRanges as Ranges, TreeNode};
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

/// Hash pairs a writer gathers before it writes them out: 1 MiB, the pairs over 256 MiB of data.
pub const WINDOW_PAIRS: usize = 16384;

/// Writes hash pairs into a pre-order outboard file with `pwrite`, never through a memory map: a
/// map of a file that another process truncates faults with SIGBUS, ending the whole node, and
/// no lock taken here could stop a process that does not ask for it. Pairs are gathered in a
/// window of adjacent slots and written in runs, so the cost is a few syscalls per window rather
/// than one per pair; a slot never saved is never written, so the pairs already in a partial
/// blob's outboard survive a decoder that covers other ranges.
pub struct OutboardWriter {
    file: File,
    path: PathBuf,
    tree: BaoTree,
    capacity: usize,
    /// The slot (pair number in the file) of `window[0..64]`.
    start: u64,
    window: Vec<u8>,
    /// Whether each slot of the window holds a pair to write.
    saved: Vec<bool>,
}

impl OutboardWriter {
    /// A writer of at most `capacity` pairs at a time into `file`, the outboard of `tree`.
    pub fn new(file: File, path: PathBuf, tree: BaoTree, capacity: usize) -> Self {
        OutboardWriter {
            file,
            path,
            tree,
            capacity: capacity.max(1),
            start: 0,
            window: Vec::new(),
            saved: Vec::new(),
        }
    }

    /// The slot of `node`'s pair: none for a node inside one chunk group (a stream of a range
    /// smaller than a group, such as the last chunk that proves the size, carries such nodes;
    /// they are verified, and the group's data is what the outboard keeps of them), and an
    /// error for a node past the end of this blob, which would land on another node's slot.
    fn slot(&self, node: TreeNode) -> Result<Option<u64>> {
        if node.level() < u32::from(self.tree.block_size().chunk_log()) {
            return Ok(None);
        }
        let pairs = self.tree.outboard_size() / 64;
        match self.tree.pre_order_offset(node) {
            Some(slot) if slot < pairs && node.mid().to_bytes() < self.tree.size() => {
                Ok(Some(slot))
            }
            _ => Err(Error::Internal(format!(
                "the outboard of a {} byte blob has no place for node {node:?}",
                self.tree.size()
            ))),
        }
    }

    /// Saves the hash pair of `node` (64 bytes: the left child's hash, then the right one's).
    pub fn save(&mut self, node: TreeNode, pair: &[u8; 64]) -> Result<()> {
        let Some(slot) = self.slot(node)? else {
            return Ok(());
        };
        if self.saved.is_empty() {
            self.start = slot;
        } else if slot >= self.start + self.capacity as u64 {
            self.flush()?;
            self.start = slot;
        }
        if slot < self.start {
            // Post-order saves a parent after its subtree, which may already be written out.
            return self
                .file
                .write_all_at(pair, slot * 64)
                .map_err(at(&self.path));
        }
        let i = (slot - self.start) as usize;
        if self.saved.len() <= i {
            self.saved.resize(i + 1, false);
            self.window.resize((i + 1) * 64, 0);
        }
        self.window[i * 64..(i + 1) * 64].copy_from_slice(pair);
        self.saved[i] = true;
        Ok(())
    }

    /// Writes out the saved pairs, one `pwrite` per run of adjacent slots.
    pub fn flush(&mut self) -> Result<()> {
        let mut i = 0;
        while i < self.saved.len() {
            if !self.saved[i] {
                i += 1;
                continue;
            }
            let end = i + self.saved[i..].iter().take_while(|s| **s).count();
            self.file
                .write_all_at(&self.window[i * 64..end * 64], (self.start + i as u64) * 64)
                .map_err(at(&self.path))?;
            i = end;
        }
        self.saved.clear();
        self.window.clear();
        Ok(())
    }

    /// Makes the pairs written out by [`flush`](Self::flush) durable. Takes `&self` so that a
    /// decoder's `sync` shares its borrow with the getters another thread may call meanwhile.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(at(&self.path))
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
    ob: &mut OutboardWriter,
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
                    let mut pair = [0u8; 64];
                    pair[..32].copy_from_slice(left.as_bytes());
                    pair[32..].copy_from_slice(right.as_bytes());
                    ob.save(node, &pair)?;
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
        .write(true)
        .create(true)
        .truncate(true)
        .open(target)
        .map_err(at(target))?;
    out.set_len(tree.outboard_size()).map_err(at(target))?;
    let mut progress = Progress {
        callback,
        total: size,
        next_report: PROGRESS_EVERY,
    };
    let mut ob = OutboardWriter::new(out, target.to_path_buf(), tree, WINDOW_PAIRS);
    let root = hash_into(&file, data, tree, &mut ob, &mut progress)?;
    ob.flush()?;
    ob.sync()?;
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

/// Whether every parent of the pre-order outboard `outboard` of a blob of `size` bytes hashes to
/// the one above it, up to `root`: then every chunk group's hash in it is the one `root` commits
/// to. A check of the tree alone, 64 bytes a node, with the GIL released; the data is not read.
#[pyfunction]
pub fn outboard_chains(py: Python<'_>, outboard: PathBuf, root: &[u8], size: u64) -> Result<bool> {
    let root = crate::parse_root(root)?;
    py.detach(|| chains(&outboard, root, size))
}

fn chains(outboard: &Path, root: blake3::Hash, size: u64) -> Result<bool> {
    let file = Named::open(outboard)?;
    let len = file.file.metadata().map_err(at(outboard))?.len();
    chains_in(file, len, CHAINS_WINDOW, root, size)
}

/// `chains` for an outboard of `len` bytes read from `outboard`, `window` bytes at a time.
fn chains_in(
    outboard: impl positioned_io::ReadAt,
    len: u64,
    window: usize,
    root: blake3::Hash,
    size: u64,
) -> Result<bool> {
    let tree = tree(size);
    if tree.blocks() <= 1 {
        return Ok(false); // no parent above a lone chunk group: only its data can prove it
    }
    if len < tree.outboard_size() {
        return Ok(false);
    }
    let ob = PreOrderOutboard {
        root,
        tree,
        data: Windowed::new(outboard, window),
    };
    let mut valid = Ranges::empty();
    for range in bao_tree::io::sync::valid_outboard_ranges(ob, &Ranges::all()) {
        valid |= Ranges::from(range.map_err(Error::untag)?);
    }
    Ok(valid == Ranges::from(ChunkNum(0)..tree.chunks()))
}

/// Bytes of the outboard `chains` reads at once.
const CHAINS_WINDOW: usize = 256 << 10;

/// Reads through a window of bytes read at once. The check walks the tree in pre-order, the
/// order of the file, one 64-byte node at a time: read one by one, the nodes of 256 MiB took
/// 16,384 system calls at the end of every such download; through the window, four.
struct Windowed<R> {
    inner: R,
    size: usize,
    /// The file offset of `window[0]`, and the bytes read from there.
    window: RefCell<(u64, Vec<u8>)>,
}

impl<R: positioned_io::ReadAt> Windowed<R> {
    fn new(inner: R, size: usize) -> Self {
        Windowed {
            inner,
            size,
            window: RefCell::new((0, Vec::new())),
        }
    }
}

impl<R: positioned_io::ReadAt> positioned_io::ReadAt for Windowed<R> {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        if buf.len() > self.size {
            return self.inner.read_at(pos, buf);
        }
        let mut window = self.window.borrow_mut();
        let (start, bytes) = &mut *window;
        let end = pos + buf.len() as u64;
        if pos < *start || end > *start + bytes.len() as u64 {
            bytes.resize(self.size, 0);
            let mut filled = 0;
            while filled < bytes.len() {
                match self
                    .inner
                    .read_at(pos + filled as u64, &mut bytes[filled..])
                {
                    Ok(0) => break, // the end of the file
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        bytes.clear();
                        return Err(e);
                    }
                }
            }
            bytes.truncate(filled);
            *start = pos;
        }
        let offset = (pos - *start) as usize;
        let n = buf.len().min(bytes.len().saturating_sub(offset));
        buf[..n].copy_from_slice(&bytes[offset..offset + n]);
        Ok(n)
    }
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use bao_tree::BlockSize;

    use super::*;

    /// bao-tree's own pre-order outboard of `data`, the reference.
    fn reference(data: &[u8]) -> (blake3::Hash, Vec<u8>) {
        let tree = tree(data.len() as u64);
        let mut ob = PreOrderOutboard::<Vec<u8>> {
            tree,
            ..Default::default()
        };
        ob.data = vec![0u8; tree.outboard_size() as usize];
        let root = outboard(data, tree, &mut ob).unwrap();
        (root, ob.data)
    }

    fn data(size: usize) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(size as u64);
        std::iter::repeat_with(|| rng.u8(..)).take(size).collect()
    }

    fn writer(file: &tempfile::NamedTempFile, tree: BaoTree, capacity: usize) -> OutboardWriter {
        let handle = file.reopen().unwrap();
        OutboardWriter::new(handle, file.path().to_path_buf(), tree, capacity)
    }

    const SIZES: [usize; 7] = [
        0,
        1,
        16384,
        16385,
        5 * 16384 + 3,
        37 * 16384,
        100 * 16384 + 1000,
    ];

    #[test]
    fn a_file_outboard_in_any_window_matches_bao_tree() {
        for size in SIZES {
            let data = data(size);
            let (root, expected) = reference(&data);
            let mut input = tempfile::NamedTempFile::new().unwrap();
            input.write_all(&data).unwrap();
            for capacity in [1, 2, 3, 7, WINDOW_PAIRS] {
                let out = tempfile::NamedTempFile::new().unwrap();
                let tree = tree(size as u64);
                out.as_file().set_len(tree.outboard_size()).unwrap();
                let mut ob = writer(&out, tree, capacity);
                let mut progress = Progress {
                    callback: None,
                    total: size as u64,
                    next_report: PROGRESS_EVERY,
                };
                let file = File::open(input.path()).unwrap();
                let got = hash_into(&file, input.path(), tree, &mut ob, &mut progress);
                ob.flush().unwrap();
                assert_eq!(got.unwrap(), root, "size {size}");
                let written = std::fs::read(out.path()).unwrap();
                assert!(written == expected, "size {size}, window {capacity}");
            }
        }
    }

    #[test]
    fn an_outboard_chains_to_its_root_and_any_flipped_or_missing_byte_breaks_it() {
        for size in [16385usize, 5 * 16384 + 3, 37 * 16384, 100 * 16384 + 1000] {
            let (root, good) = reference(&data(size));
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &good).unwrap();
            assert!(
                chains(file.path(), root, size as u64).unwrap(),
                "size {size}"
            );
            let other = blake3::hash(b"another root");
            assert!(
                !chains(file.path(), other, size as u64).unwrap(),
                "size {size}"
            );
            for position in [0, good.len() / 2, good.len() - 1] {
                let mut bad = good.clone();
                bad[position] ^= 1;
                std::fs::write(file.path(), &bad).unwrap();
                assert!(
                    !chains(file.path(), root, size as u64).unwrap(),
                    "size {size} at {position}"
                );
            }
            std::fs::write(file.path(), &good[..good.len() - 1]).unwrap();
            assert!(
                !chains(file.path(), root, size as u64).unwrap(),
                "size {size} truncated"
            );
        }
    }

    /// An outboard in memory that counts the reads made of it.
    struct Counted<'a> {
        bytes: &'a [u8],
        reads: std::cell::Cell<usize>,
    }

    impl positioned_io::ReadAt for Counted<'_> {
        fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
            self.reads.set(self.reads.get() + 1);
            let start = (pos as usize).min(self.bytes.len());
            let n = buf.len().min(self.bytes.len() - start);
            buf[..n].copy_from_slice(&self.bytes[start..start + n]);
            Ok(n)
        }
    }

    #[test]
    fn chains_reads_the_outboard_a_window_at_a_time_not_a_node_at_a_time() {
        let size = 600 * 16384 + 5;
        let (root, good) = reference(&data(size));
        let window = 4096; // several windows, to refill
        assert!(good.len() > 4 * window);
        let counted = Counted {
            bytes: &good,
            reads: std::cell::Cell::new(0),
        };
        assert!(chains_in(&counted, good.len() as u64, window, root, size as u64).unwrap());
        let windows = good.len().div_ceil(window);
        assert!(
            counted.reads.get() <= windows + 1,
            "{} reads of {} nodes",
            counted.reads.get(),
            good.len() / 64
        );
        // A node past the window still breaks the chain.
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let counted = Counted {
            bytes: &bad,
            reads: std::cell::Cell::new(0),
        };
        assert!(!chains_in(&counted, bad.len() as u64, window, root, size as u64).unwrap());
    }

    #[test]
    fn a_lone_chunk_group_never_chains_without_its_data() {
        let (root, good) = reference(&data(16384));
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &good).unwrap();
        assert!(!chains(file.path(), root, 16384).unwrap());
    }

    #[test]
    fn create_outboard_replaces_a_longer_file() {
        let data = data(9 * 16384);
        let dir = tempfile::tempdir().unwrap();
        let (input, target) = (dir.path().join("data"), dir.path().join("obao"));
        std::fs::write(&input, &data).unwrap();
        std::fs::write(&target, vec![0xAA; 4096]).unwrap();
        let (root, size) = create_file_outboard(&input, &target, None).unwrap();
        assert_eq!((root, size), (reference(&data).0, data.len() as u64));
        assert_eq!(std::fs::read(&target).unwrap(), reference(&data).1);
    }

    #[test]
    fn slots_never_saved_are_never_written() {
        let size = 37 * 16384;
        let (_, expected) = reference(&data(size));
        let tree = tree(size as u64);
        let nodes: Vec<TreeNode> = tree
            .pre_order_nodes_iter()
            .filter(|n| tree.pre_order_offset(*n).is_some())
            .collect();
        assert_eq!(nodes.len() * 64, expected.len());
        // Every third node: in pre-order (as a decoder saves) and the other way round (as
        // post-order saves a parent after its children).
        let forward: Vec<TreeNode> = nodes.iter().copied().step_by(3).collect();
        let backward: Vec<TreeNode> = forward.iter().copied().rev().collect();
        for chosen in [forward, backward] {
            for capacity in [1, 4, WINDOW_PAIRS] {
                let out = tempfile::NamedTempFile::new().unwrap();
                std::fs::write(out.path(), vec![0xAA; expected.len()]).unwrap();
                let mut ob = writer(&out, tree, capacity);
                for node in &chosen {
                    let slot = tree.pre_order_offset(*node).unwrap() as usize * 64;
                    ob.save(*node, expected[slot..slot + 64].try_into().unwrap())
                        .unwrap();
                }
                ob.flush().unwrap();
                let written = std::fs::read(out.path()).unwrap();
                for node in &nodes {
                    let slot = tree.pre_order_offset(*node).unwrap() as usize * 64;
                    let want = if chosen.contains(node) {
                        &expected[slot..slot + 64]
                    } else {
                        &[0xAA; 64][..]
                    };
                    assert_eq!(&written[slot..slot + 64], want, "window {capacity}");
                }
            }
        }
    }

    #[test]
    fn a_pair_without_a_slot_is_an_error_and_writes_nothing() {
        let small = tree(4 * 16384);
        let out = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(out.path(), vec![0xAA; small.outboard_size() as usize]).unwrap();
        let mut ob = writer(&out, small, WINDOW_PAIRS);
        // The parent over groups 4..8 of a larger blob lies past the end of this one.
        let beyond = tree(8 * 16384)
            .pre_order_nodes_iter()
            .find(|n| n.chunk_range().start.0 == 4 * 16 && n.chunk_range().end.0 == 8 * 16)
            .unwrap();
        match ob.save(beyond, &[0u8; 64]) {
            Err(Error::Internal(message)) => assert!(message.contains("no place")),
            other => panic!("saving {beyond:?} gave {other:?}"),
        }
        // A node inside one chunk group has no pair in an outboard of 16 KiB groups: a stream
        // of the last chunk alone carries it, and it is skipped.
        let inside = BaoTree::new(4 * 16384, BlockSize::ZERO)
            .pre_order_nodes_iter()
            .find(|n| n.level() == 1)
            .unwrap();
        ob.save(inside, &[0u8; 64]).unwrap();
        ob.flush().unwrap();
        assert_eq!(std::fs::read(out.path()).unwrap(), vec![0xAA; 3 * 64]);
    }
}
