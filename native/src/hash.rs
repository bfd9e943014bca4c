//! The two BLAKE3 primitives of verified streaming: the chaining value of a run of chunks, and
//! the merge of two children into their parent.

use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, HasherExt, Mode};
use blake3::Hash;

/// Chaining value of `data`, which starts at chunk `start_chunk`; the root hash if `is_root`.
pub fn hash_subtree(start_chunk: u64, data: &[u8], is_root: bool) -> Hash {
    if is_root {
        blake3::hash(data)
    } else {
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(start_chunk * 1024);
        hasher.update(data);
        Hash::from(hasher.finalize_non_root())
    }
}

/// Chaining value of a parent node from its children's; the root hash if `is_root`.
pub fn parent_cv(left: &Hash, right: &Hash, is_root: bool) -> Hash {
    if is_root {
        merge_subtrees_root(left.as_bytes(), right.as_bytes(), Mode::Hash)
    } else {
        Hash::from(merge_subtrees_non_root(
            left.as_bytes(),
            right.as_bytes(),
            Mode::Hash,
        ))
    }
}

/// Splits a 64-byte parent record into its two child hashes.
pub fn split_pair(pair: &[u8]) -> (Hash, Hash) {
    let left: [u8; 32] = pair[..32].try_into().expect("64-byte pair");
    let right: [u8; 32] = pair[32..64].try_into().expect("64-byte pair");
    (Hash::from(left), Hash::from(right))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_groups_merge_into_the_blake3_root() {
        let data: Vec<u8> = (0..32768u32).map(|i| (i % 251) as u8).collect();
        let left = hash_subtree(0, &data[..16384], false);
        let right = hash_subtree(16, &data[16384..], false);
        assert_eq!(parent_cv(&left, &right, true), blake3::hash(&data));
        assert_eq!(hash_subtree(0, &data, true), blake3::hash(&data));
    }
}
