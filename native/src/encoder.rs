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
use smallvec::SmallVec;

use crate::error::{at, Error, Result};
use crate::hash::{hash_subtree, parent_cv, split_pair};
use crate::outboard::tree;
use crate::ranges::{truncated, ChunkRanges};
use crate::GROUP_CHUNKS;

/// Where bytes come from: a file, or a small blob held in memory.
#[derive(FromPyObject)]
pub enum Source {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

enum Reader {
    Bytes(Vec<u8>),
    File(File),
}

impl Reader {
    fn open(source: Source) -> Result<Self> {
        Ok(match source {
            Source::Bytes(b) => Reader::Bytes(b),
            Source::Path(p) => Reader::File(File::open(&p).map_err(at(&p))?),
        })
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Reader::File(f) => f.read_exact_at(buf, offset),
            Reader::Bytes(b) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let src = start
                    .checked_add(buf.len())
                    .and_then(|end| b.get(start..end))
                    .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
                buf.copy_from_slice(src);
                Ok(())
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
    stack: SmallVec<[blake3::Hash; 16]>,
    header_sent: bool,
    next: Option<BaoChunk>,
    buffer: Vec<u8>,
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
        match self.data.read_exact_at(offset, &mut self.buffer) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(changed("the data", group)),
            other => Ok(other?),
        }
    }

    /// The hash pair of `node`: from the outboard, or hashed from the data below group level.
    fn pair(&mut self, node: TreeNode) -> Result<[u8; 64]> {
        let group = node.chunk_range().start.0 / GROUP_CHUNKS;
        let mut pair = [0u8; 64];
        if let Some(offset) = self.tree.pre_order_offset(node) {
            match self.outboard.read_exact_at(offset * 64, &mut pair) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(changed("the outboard", group))
                }
                other => other?,
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

    fn emit(&mut self, item: BaoChunk, out: &mut Vec<u8>) -> Result<()> {
        let expected = self.stack.pop().expect("one hash per item");
        match item {
            BaoChunk::Parent {
                node,
                is_root,
                left,
                right,
                ..
            } => {
                let pair = self.pair(node)?;
                let (l, r) = split_pair(&pair);
                if parent_cv(&l, &r, is_root) != expected {
                    return Err(changed(
                        "the outboard",
                        node.chunk_range().start.0 / GROUP_CHUNKS,
                    ));
                }
                if right {
                    self.stack.push(r);
                }
                if left {
                    self.stack.push(l);
                }
                out.extend_from_slice(&pair);
            }
            BaoChunk::Leaf {
                start_chunk,
                size,
                is_root,
                ..
            } => {
                let group = start_chunk.0 / GROUP_CHUNKS;
                self.read_data(start_chunk.to_bytes(), size, group)?;
                if hash_subtree(start_chunk.0, &self.buffer, is_root) != expected {
                    return Err(changed("the data", group));
                }
                out.extend_from_slice(&self.buffer);
            }
        }
        Ok(())
    }

    fn fill(&mut self, max_bytes: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(max_bytes.min(1 << 22) + (16 << 10));
        if !self.header_sent {
            out.extend_from_slice(&self.tree.size().to_le_bytes());
            self.header_sent = true;
        }
        while out.len() < max_bytes {
            let Some(item) = self.next else { break };
            self.emit(item, &mut out)?;
            self.next = self.iter.next();
        }
        Ok(out)
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
        let mut stack = SmallVec::new();
        stack.push(root);
        Ok(Encoder {
            tree,
            data: Reader::open(data)?,
            outboard: Reader::open(outboard)?,
            iter,
            stack,
            header_sent: false,
            next,
            buffer: Vec::new(),
        })
    }

    #[getter]
    fn size(&self) -> u64 {
        self.tree.size()
    }

    /// True once the whole stream has been read.
    #[getter]
    fn done(&self) -> bool {
        self.header_sent && self.next.is_none()
    }

    /// The next piece of the stream, about `max_bytes` long (a leaf is never split); b"" at
    /// the end. Raises IntegrityError if the data or outboard no longer match the root.
    #[pyo3(signature = (max_bytes = 262144))]
    fn read<'py>(
        &mut self,
        py: Python<'py>,
        max_bytes: usize,
    ) -> Result<Bound<'py, pyo3::types::PyBytes>> {
        let out = py.detach(|| self.fill(max_bytes))?;
        Ok(pyo3::types::PyBytes::new(py, &out))
    }
}
