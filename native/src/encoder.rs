//! The sending side: produces the response stream for a set of chunk ranges from a data file
//! and its outboard, piece by piece, checking every byte against the root before it leaves.
//! A file that changed on disk raises an integrity error instead of emitting wrong bytes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bao_tree::iter::{BaoChunk, ResponseIter};
use bao_tree::{BaoTree, TreeNode};
use pyo3::prelude::*;

use crate::error::{at, Error, Result};
use crate::hash::hash_subtree;
use crate::outboard::tree;
use crate::ranges::{truncated, ChunkRanges};
use crate::verify::{group_of, Verifier};

/// Where bytes come from: a file, or a small blob held in memory.
#[derive(FromPyObject)]
pub enum Source {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

enum Reader {
    Bytes(Vec<u8>),
    File(File, PathBuf),
}

impl Reader {
    fn open(source: Source) -> Result<Self> {
        Ok(match source {
            Source::Bytes(b) => Reader::Bytes(b),
            Source::Path(p) => Reader::File(File::open(&p).map_err(at(&p))?, p),
        })
    }

    /// Fills `buf` from `offset`; Ok(false) if the source ends before.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<bool> {
        match self {
            Reader::File(f, path) => match f.read_exact_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
                other => other.map(|()| true).map_err(at(path)),
            },
            Reader::Bytes(b) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let src = start
                    .checked_add(buf.len())
                    .and_then(|end| b.get(start..end));
                if let Some(src) = src {
                    buf.copy_from_slice(src);
                }
                Ok(src.is_some())
            }
        }
    }
}

#[pyclass(module = "ringdrop._native")]
pub struct Encoder {
    tree: BaoTree,
    data: Reader,
    outboard: Reader,
    iter: ResponseIter,
    verifier: Verifier,
    header_sent: bool,
    next: Option<BaoChunk>,
    buffer: Vec<u8>,
    /// What a failed read raised: every read after it fails too.
    failed: Option<String>,
}

fn changed(what: &str, group: u64) -> Error {
    Error::integrity(
        format!("{what} no longer matches its hash at chunk group {group}: it changed on disk"),
        Some(group),
    )
}

impl Encoder {
    fn read_data(&mut self, offset: u64, len: usize, group: u64) -> Result<()> {
        self.buffer.resize(len, 0);
        if !self.data.read_exact_at(offset, &mut self.buffer)? {
            return Err(changed("the data", group));
        }
        Ok(())
    }

    /// The hash pair of `node`: from the outboard, or hashed from the data below group level.
    fn pair(&mut self, node: TreeNode) -> Result<[u8; 64]> {
        let group = group_of(node.chunk_range().start);
        let mut pair = [0u8; 64];
        if let Some(offset) = self.tree.pre_order_offset(node) {
            if !self.outboard.read_exact_at(offset * 64, &mut pair)? {
                return Err(changed("the outboard", group));
            }
            return Ok(pair);
        }
        let range = node.chunk_range();
        let start = range.start.to_bytes();
        let mid = node.mid().to_bytes();
        let end = range.end.to_bytes().min(self.tree.size());
        self.read_data(start, (end - start) as usize, group)?;
        let split = (mid - start) as usize;
        let left = hash_subtree(range.start.0, &self.buffer[..split], false);
        let right = hash_subtree(node.mid().0, &self.buffer[split..], false);
        pair[..32].copy_from_slice(left.as_bytes());
        pair[32..].copy_from_slice(right.as_bytes());
        Ok(pair)
    }

    /// Takes the items of the next piece, about `max_bytes` long (a leaf is never split):
    /// whether it starts with the size header, the items, and the piece's length.
    fn plan(&mut self, max_bytes: usize) -> (bool, Vec<BaoChunk>, usize) {
        let header = !self.header_sent;
        self.header_sent = true;
        let mut len = if header { 8 } else { 0 };
        let mut items = Vec::new();
        while len < max_bytes {
            let Some(item) = self.next else { break };
            len += match item {
                BaoChunk::Parent { .. } => 64,
                BaoChunk::Leaf { size, .. } => size,
            };
            items.push(item);
            self.next = self.iter.next();
        }
        (header, items, len)
    }

    /// Writes the planned piece into `out` (exactly its length), each item checked against
    /// the root where it lies: leaves are read straight into place, not copied there.
    fn fill(&mut self, header: bool, items: &[BaoChunk], out: &mut [u8]) -> Result<()> {
        let mut at = 0;
        if header {
            out[..8].copy_from_slice(&self.tree.size().to_le_bytes());
            at = 8;
        }
        for &item in items {
            match item {
                BaoChunk::Parent { node, .. } => {
                    let pair = self.pair(node)?;
                    self.verifier
                        .verify_item(&item, &pair)
                        .map_err(|m| changed("the outboard", m.group()))?;
                    out[at..at + 64].copy_from_slice(&pair);
                    at += 64;
                }
                BaoChunk::Leaf {
                    start_chunk, size, ..
                } => {
                    let leaf = &mut out[at..at + size];
                    if !self.data.read_exact_at(start_chunk.to_bytes(), leaf)? {
                        return Err(changed("the data", group_of(start_chunk)));
                    }
                    self.verifier
                        .verify_item(&item, leaf)
                        .map_err(|m| changed("the data", m.group()))?;
                    at += size;
                }
            }
        }
        debug_assert_eq!(at, out.len());
        Ok(())
    }
}

#[pymethods]
impl Encoder {
    #[new]
    fn py_new(
        data: Source,
        outboard: Source,
        root: &[u8],
        size: u64,
        ranges: &ChunkRanges,
    ) -> Result<Self> {
        let root = crate::parse_root(root)?;
        let tree = tree(size);
        let ranges = truncated(&ranges.inner, size);
        let mut iter = ResponseIter::new(tree, ranges);
        let next = iter.next();
        Ok(Encoder {
            tree,
            data: Reader::open(data)?,
            outboard: Reader::open(outboard)?,
            iter,
            verifier: Verifier::new(tree, root),
            header_sent: false,
            next,
            buffer: Vec::new(),
            failed: None,
        })
    }

    #[getter]
    fn size(&self) -> u64 {
        self.tree.size()
    }

    /// True once the whole stream has been read (never after a failed read).
    #[getter]
    fn done(&self) -> bool {
        self.failed.is_none() && self.header_sent && self.next.is_none()
    }

    /// The next piece of the stream, about `max_bytes` long (a leaf is never split); b"" at
    /// the end. Raises IntegrityError if the data or outboard no longer match the root, and
    /// again at every read after that: the stream cannot go on past a piece it could not make.
    #[pyo3(signature = (max_bytes = 262144))]
    fn read<'py>(
        &mut self,
        py: Python<'py>,
        max_bytes: usize,
    ) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        if let Some(first) = &self.failed {
            let message = format!("this stream already failed: {first}");
            return Err(Error::integrity(message, None).into());
        }
        let (header, items, len) = self.plan(max_bytes);
        // Each leaf is read into the bytes object itself (which pyo3 zeroes first), not into
        // a buffer and copied; the interpreter lock is released meanwhile, the object being
        // nobody else's yet.
        let piece = pyo3::types::PyBytes::new_with(py, len, |out| {
            py.detach(|| self.fill(header, &items, out))
                .map_err(PyErr::from)
        });
        if let Err(e) = &piece {
            // The planned items are gone whatever failed, the allocation included.
            self.failed = Some(e.value(py).to_string());
        }
        piece
    }
}
