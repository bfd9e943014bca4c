//! `ChunkRanges`: sets of 1 KiB chunk ranges, with the wire encoding and the per-group bitfield.
//!
//! Wire encoding: the set's boundaries (alternately a start and an end, the last end possibly
//! missing for an unbounded range) as LEB128 varints of the difference to the previous boundary.
//! The empty set is the empty string; `[0]` is "everything".

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher};

use bao_tree::{ChunkNum, ChunkRanges as Ranges};
use pyo3::prelude::*;
use range_collections::range_set::RangeSetRange;
use smallvec::SmallVec;

use crate::error::{Error, Result};
use crate::{GROUP_CHUNKS, GROUP_SIZE};

/// At most this many boundaries in a decoded range set: bounds the work a peer can cause.
const MAX_BOUNDARIES: usize = 1 << 20;

#[pyclass(frozen, module = "ringdrop._native")]
#[derive(Clone, Debug)]
pub struct ChunkRanges {
    pub inner: Ranges,
}

impl ChunkRanges {
    pub fn new(inner: Ranges) -> Self {
        ChunkRanges { inner }
    }
}

/// Number of 1 KiB chunks of a blob of `size` bytes.
pub fn chunks(size: u64) -> u64 {
    size.div_ceil(1024)
}

/// Number of 16 KiB chunk groups of a blob of `size` bytes (0 for the empty blob).
pub fn groups(size: u64) -> u64 {
    size.div_ceil(GROUP_SIZE)
}

fn from_boundaries(boundaries: Vec<u64>) -> Result<Ranges> {
    let bs: SmallVec<[ChunkNum; 2]> = boundaries.into_iter().map(ChunkNum).collect();
    Ranges::new(bs)
        .ok_or_else(|| Error::Value("range boundaries must be strictly increasing".into()))
}

fn limit(ranges: &Ranges, end: u64) -> Ranges {
    ranges & &Ranges::from(ChunkNum(0)..ChunkNum(end))
}

#[pymethods]
impl ChunkRanges {
    #[new]
    #[pyo3(signature = (ranges = None))]
    fn py_new(ranges: Option<Vec<(u64, Option<u64>)>>) -> Result<Self> {
        let mut acc = Ranges::empty();
        for (start, end) in ranges.unwrap_or_default() {
            let r = match end {
                Some(end) if end < start => {
                    return Err(Error::Value(format!(
                        "range {start}..{end} ends before it starts"
                    )))
                }
                Some(end) => Ranges::from(ChunkNum(start)..ChunkNum(end)),
                None => Ranges::from(ChunkNum(start)..),
            };
            acc |= r;
        }
        Ok(Self::new(acc))
    }

    /// Every chunk, whatever the size: also a request for the size proof.
    #[staticmethod]
    fn all() -> Self {
        Self::new(Ranges::all())
    }

    /// The chunks of chunk groups `start..end`.
    #[staticmethod]
    fn groups(start: u64, end: u64) -> Result<Self> {
        if end < start {
            return Err(Error::Value(format!(
                "groups {start}..{end} end before they start"
            )));
        }
        let (s, e) = (
            start.saturating_mul(GROUP_CHUNKS),
            end.saturating_mul(GROUP_CHUNKS),
        );
        Ok(Self::new(Ranges::from(ChunkNum(s)..ChunkNum(e))))
    }

    #[staticmethod]
    fn from_bytes(data: &[u8]) -> Result<Self> {
        let mut boundaries = Vec::new();
        let mut prev: u64 = 0;
        let mut rest = data;
        while !rest.is_empty() {
            let (delta, used) = read_varint(rest)?;
            rest = &rest[used..];
            if !boundaries.is_empty() && delta == 0 {
                return Err(Error::Protocol("range set has an empty range".into()));
            }
            prev = prev
                .checked_add(delta)
                .ok_or_else(|| Error::Protocol("range set overflows 64 bits".into()))?;
            boundaries.push(prev);
            if boundaries.len() > MAX_BOUNDARIES {
                return Err(Error::Protocol("range set has too many ranges".into()));
            }
        }
        from_boundaries(boundaries)
            .map(Self::new)
            .map_err(|_| Error::Protocol("range set is not in canonical form".into()))
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = 0u64;
        for b in self.inner.boundaries() {
            write_varint(&mut out, b.0 - prev);
            prev = b.0;
        }
        out
    }

    /// Bit i (least significant bit first) is set iff chunk group i is wholly in the set; the
    /// last group counts as whole when it is covered up to the end of the blob.
    fn to_bitfield(&self, size: u64) -> Vec<u8> {
        let n = groups(size);
        let total = chunks(size);
        let mut bits = vec![0u8; n.div_ceil(8) as usize];
        for range in limit(&self.inner, total).iter() {
            let (s, e) = match range {
                RangeSetRange::Range(r) => (r.start.0, r.end.0),
                RangeSetRange::RangeFrom(r) => (r.start.0, total),
            };
            let first = s.div_ceil(GROUP_CHUNKS);
            let last = if e == total { n } else { e / GROUP_CHUNKS };
            for g in first..last {
                bits[(g / 8) as usize] |= 1 << (g % 8);
            }
        }
        bits
    }

    #[staticmethod]
    fn from_bitfield(bitfield: &[u8], size: u64) -> Result<Self> {
        let n = groups(size);
        if bitfield.len() as u64 != n.div_ceil(8) {
            return Err(Error::Value(format!(
                "a bitfield for {size} bytes has {} bytes, not {}",
                n.div_ceil(8),
                bitfield.len()
            )));
        }
        let total = chunks(size);
        let mut boundaries = Vec::new();
        let mut inside = false;
        for g in 0..n {
            let set = bitfield[(g / 8) as usize] & (1 << (g % 8)) != 0;
            if set != inside {
                boundaries.push(g * GROUP_CHUNKS);
                inside = set;
            }
        }
        if inside {
            boundaries.push(total);
        }
        from_boundaries(boundaries).map(Self::new)
    }

    fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    fn is_all(&self) -> bool {
        self.inner.is_all()
    }

    /// The chunks of a blob of `size` bytes that are not in this set.
    fn complement(&self, size: u64) -> Self {
        let everything = Ranges::from(ChunkNum(0)..ChunkNum(chunks(size)));
        Self::new(&everything - &self.inner)
    }

    /// How many bytes of a blob of `size` bytes this set covers.
    fn byte_count(&self, size: u64) -> u64 {
        let total = chunks(size);
        limit(&self.inner, total)
            .iter()
            .map(|range| {
                let (s, e) = match range {
                    RangeSetRange::Range(r) => (r.start.0, r.end.0),
                    RangeSetRange::RangeFrom(r) => (r.start.0, total),
                };
                (e * 1024).min(size) - s * 1024
            })
            .sum()
    }

    fn __or__(&self, other: &Self) -> Self {
        Self::new(&self.inner | &other.inner)
    }

    fn __and__(&self, other: &Self) -> Self {
        Self::new(&self.inner & &other.inner)
    }

    fn __sub__(&self, other: &Self) -> Self {
        Self::new(&self.inner - &other.inner)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<ChunkRanges>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __ne__(&self, other: &Bound<'_, PyAny>) -> bool {
        !self.__eq__(other)
    }

    fn __hash__(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for b in self.inner.boundaries() {
            b.0.hash(&mut h);
        }
        h.finish()
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let items: Vec<(u64, Option<u64>)> = self
            .inner
            .iter()
            .map(|range| match range {
                RangeSetRange::Range(r) => (r.start.0, Some(r.end.0)),
                RangeSetRange::RangeFrom(r) => (r.start.0, None),
            })
            .collect();
        let list = pyo3::types::PyList::new(py, items)?;
        Ok(list.try_iter()?.into_any().unbind())
    }

    fn __len__(&self) -> usize {
        self.inner.boundaries().len().div_ceil(2)
    }

    fn __repr__(&self) -> String {
        let parts: Vec<String> = self
            .inner
            .iter()
            .map(|range| match range {
                RangeSetRange::Range(r) => format!("({}, {})", r.start.0, r.end.0),
                RangeSetRange::RangeFrom(r) => format!("({}, None)", r.start.0),
            })
            .collect();
        format!("ChunkRanges([{}])", parts.join(", "))
    }
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_varint(data: &[u8]) -> Result<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in data.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            break;
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(Error::Protocol("range set has a non-minimal varint".into()));
            }
            return Ok((v, i + 1));
        }
    }
    Err(Error::Protocol(
        "range set has a truncated or oversized varint".into(),
    ))
}

/// `ranges` adapted to a blob of `size` bytes: anything at or past the end asks for the last
/// chunk (which proves the size), as bao-tree's `truncate_ranges` defines.
pub fn truncated(ranges: &Ranges, size: u64) -> Ranges {
    let bs = bao_tree::io::sync::truncate_ranges(ranges, size).boundaries();
    Ranges::new_unchecked(SmallVec::from_slice(bs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [0, 1, 127, 128, 16383, 16384, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(read_varint(&out).unwrap(), (v, out.len()));
        }
    }

    #[test]
    fn varints_refuse_overlong_and_truncated_input() {
        assert!(read_varint(&[0x80]).is_err());
        assert!(read_varint(&[0x81, 0x00]).is_err());
        assert!(read_varint(&[0xff; 10]).is_err());
    }

    #[test]
    fn geometry() {
        assert_eq!((chunks(0), groups(0)), (0, 0));
        assert_eq!((chunks(1025), groups(1025)), (2, 1));
        assert_eq!((chunks(16385), groups(16385)), (17, 2));
    }
}
