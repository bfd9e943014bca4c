//! The check the encoder and the decoder share: each item of a response stream against the hash
//! its parent vouched for, from the root down.

use std::ops::Range;

use bao_tree::iter::BaoChunk;
use bao_tree::{BaoTree, ChunkNum};
use smallvec::SmallVec;

use crate::hash::{hash_subtree, parent_cv, split_pair};
use crate::GROUP_CHUNKS;

/// The hashes the rest of a response stream must match, in the order its items come.
pub struct Verifier {
    tree: BaoTree,
    expected: SmallVec<[blake3::Hash; 16]>,
}

/// An item that does not hash to what its parent (or the root) promised.
#[derive(Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// A hash pair, of the node over chunk groups `groups`.
    Parent { groups: Range<u64> },
    /// A leaf: the chunk group `group`, bytes `bytes` of the blob.
    Leaf { group: u64, bytes: Range<u64> },
}

impl Mismatch {
    /// The first chunk group the mismatch concerns.
    pub fn group(&self) -> u64 {
        match self {
            Mismatch::Parent { groups } => groups.start,
            Mismatch::Leaf { group, .. } => *group,
        }
    }
}

pub fn group_of(chunk: ChunkNum) -> u64 {
    chunk.0 / GROUP_CHUNKS
}

impl Verifier {
    pub fn new(tree: BaoTree, root: blake3::Hash) -> Self {
        Verifier {
            tree,
            expected: SmallVec::from_iter([root]),
        }
    }

    /// Checks `bytes`, the content of `item` (a 64-byte hash pair or the leaf's data), against
    /// the hash expected next. A parent that matches vouches in turn for the children the
    /// stream will carry.
    pub fn verify_item(&mut self, item: &BaoChunk, bytes: &[u8]) -> Result<(), Mismatch> {
        let expected = self
            .expected
            .pop()
            .expect("one hash per item of the stream");
        match *item {
            BaoChunk::Parent {
                node,
                is_root,
                left,
                right,
                ..
            } => {
                let (l, r) = split_pair(bytes);
                if parent_cv(&l, &r, is_root) != expected {
                    let chunks = node.chunk_range();
                    let end = chunks.end.0.min(self.tree.chunks().0);
                    return Err(Mismatch::Parent {
                        groups: group_of(chunks.start)..end.div_ceil(GROUP_CHUNKS),
                    });
                }
                if right {
                    self.expected.push(r);
                }
                if left {
                    self.expected.push(l);
                }
            }
            BaoChunk::Leaf {
                start_chunk,
                is_root,
                ..
            } => {
                if hash_subtree(start_chunk.0, bytes, is_root) != expected {
                    let offset = start_chunk.to_bytes();
                    return Err(Mismatch::Leaf {
                        group: group_of(start_chunk),
                        bytes: offset..offset + bytes.len() as u64,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bao_tree::iter::ResponseIter;
    use bao_tree::ChunkRanges;

    use super::*;
    use crate::outboard::tree;

    /// The items of the full response for `data`, each with its bytes, from bao-tree's own
    /// outboard.
    fn items(data: &[u8]) -> (blake3::Hash, BaoTree, Vec<(BaoChunk, Vec<u8>)>) {
        let tree = tree(data.len() as u64);
        let mut ob = bao_tree::io::outboard::PreOrderOutboard::<Vec<u8>> {
            tree,
            ..Default::default()
        };
        ob.data = vec![0; tree.outboard_size() as usize];
        let root = bao_tree::io::sync::outboard(data, tree, &mut ob).unwrap();
        let items = ResponseIter::new(tree, ChunkRanges::all())
            .map(|item| {
                let bytes = match item {
                    BaoChunk::Parent { node, .. } => {
                        let at = tree.pre_order_offset(node).unwrap() as usize * 64;
                        ob.data[at..at + 64].to_vec()
                    }
                    BaoChunk::Leaf {
                        start_chunk, size, ..
                    } => {
                        let at = start_chunk.to_bytes() as usize;
                        data[at..at + size].to_vec()
                    }
                };
                (item, bytes)
            })
            .collect();
        (root, tree, items)
    }

    #[test]
    fn a_whole_stream_verifies_item_by_item() {
        let data: Vec<u8> = (0..5 * 16384 + 7).map(|i| (i % 253) as u8).collect();
        let (root, tree, items) = items(&data);
        let mut verifier = Verifier::new(tree, root);
        for (item, bytes) in &items {
            assert_eq!(verifier.verify_item(item, bytes), Ok(()));
        }
        assert!(verifier.expected.is_empty());
    }

    #[test]
    fn a_changed_byte_in_any_item_is_a_mismatch_naming_its_group() {
        let data: Vec<u8> = (0..5 * 16384 + 7).map(|i| (i % 253) as u8).collect();
        let (root, tree, items) = items(&data);
        for bad in 0..items.len() {
            let mut verifier = Verifier::new(tree, root);
            for (i, (item, bytes)) in items.iter().enumerate() {
                let mut bytes = bytes.clone();
                if i == bad {
                    let last = bytes.len() - 1;
                    bytes[last] ^= 1;
                    let mismatch = verifier.verify_item(item, &bytes).unwrap_err();
                    let first_group = match item {
                        BaoChunk::Parent { node, .. } => group_of(node.chunk_range().start),
                        BaoChunk::Leaf { start_chunk, .. } => group_of(*start_chunk),
                    };
                    assert_eq!(mismatch.group(), first_group);
                    break;
                }
                verifier.verify_item(item, &bytes).unwrap();
            }
        }
    }

    #[test]
    fn a_mismatched_parent_names_the_groups_below_it_within_the_blob() {
        let data = vec![7u8; 3 * 16384];
        let (root, tree, items) = items(&data);
        let (item, _) = &items[0];
        let mismatch = Verifier::new(tree, root)
            .verify_item(item, &[0u8; 64])
            .unwrap_err();
        assert_eq!(mismatch, Mismatch::Parent { groups: 0..3 });
    }
}
