//! File transfer rules (SPEC.md section 6.7) that do not need a disk: which byte
//! ranges of an upload are held, whether a chunk or a download range fits the
//! file, and how a download is cut into chunks.

use std::collections::BTreeMap;

use crate::error::ErrorCode;

/// The most separate ranges an upload's held bytes may form. Chunks sent in order,
/// or a few at a time out of order, make a handful; the cap keeps a client from
/// growing the set (and every FILE-STATUS answer) without bound with tiny chunks
/// scattered over a large file.
pub const MAX_SPANS: usize = 1024;

/// The byte ranges of a file that are held, kept merged: no two overlap or touch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges {
    /// start → end (exclusive).
    spans: BTreeMap<u64, u64>,
    held: u64,
}

impl Ranges {
    /// Nothing held.
    pub fn new() -> Self {
        Ranges::default()
    }

    /// Marks `len` bytes from `offset` as held. Bytes held already stay counted once.
    pub fn insert(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let (mut start, mut end) = (offset, offset.saturating_add(len));
        // Merge with every span that overlaps or touches [start, end).
        let touching: Vec<(u64, u64)> = self
            .spans
            .range(..=end)
            .rev()
            .take_while(|(_, e)| **e >= start)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in touching {
            self.spans.remove(&s);
            self.held -= e - s;
            start = start.min(s);
            end = end.max(e);
        }
        self.spans.insert(start, end);
        self.held += end - start;
    }

    /// Checks a chunk of `len` bytes at `offset` for a file of `size` bytes: it must
    /// lie within the file, and must not start a separate range once [`MAX_SPANS`]
    /// are held (`BAD_RANGE` either way).
    pub fn check_chunk(&self, size: u64, offset: u64, len: u64) -> Result<(), ErrorCode> {
        check_chunk(size, offset, len)?;
        if self.spans.len() < MAX_SPANS || len == 0 {
            return Ok(());
        }
        // It merges if the last span starting at or before its end reaches it.
        let end = offset + len;
        match self.spans.range(..=end).next_back() {
            Some((_, e)) if *e >= offset => Ok(()),
            _ => Err(ErrorCode::BadRange),
        }
    }

    /// Bytes held in all.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The held ranges as `(offset, length)`, in offset order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.spans.iter().map(|(s, e)| (*s, e - s))
    }

    /// Whether every byte of a file of `size` bytes is held.
    pub fn covers(&self, size: u64) -> bool {
        size == 0 || self.spans.get(&0).is_some_and(|end| *end >= size)
    }

    /// The ranges of a file of `size` bytes that are not held, in offset order.
    pub fn missing(&self, size: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = 0;
        for (s, e) in &self.spans {
            if *s >= size {
                break;
            }
            if *s > at {
                out.push((at, s - at));
            }
            at = at.max(*e);
        }
        if at < size {
            out.push((at, size - at));
        }
        out
    }

    /// The stored form: `offset+length` pairs separated by commas.
    pub fn to_text(&self) -> String {
        self.iter().map(|(o, l)| format!("{o}+{l}")).collect::<Vec<_>>().join(",")
    }

    /// Reads [`Ranges::to_text`] back; `None` if it is not in that form.
    pub fn from_text(text: &str) -> Option<Ranges> {
        let mut r = Ranges::new();
        for pair in text.split(',').filter(|p| !p.is_empty()) {
            let (o, l) = pair.split_once('+')?;
            r.insert(o.parse().ok()?, l.parse().ok()?);
        }
        Some(r)
    }
}

/// Checks that `len` bytes at `offset` lie within a file of `size` bytes
/// (`BAD_RANGE` otherwise).
pub fn check_chunk(size: u64, offset: u64, len: u64) -> Result<(), ErrorCode> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(ErrorCode::BadRange),
    }
}

/// The range a `FILE-GET offset length` sends from a file of `size` bytes, as
/// `(offset, length)`: a length of 0 means "to the end".
pub fn download_range(size: u64, offset: u64, length: u64) -> Result<(u64, u64), ErrorCode> {
    if offset > size {
        return Err(ErrorCode::BadRange);
    }
    let length = if length == 0 { size - offset } else { length };
    check_chunk(size, offset, length)?;
    Ok((offset, length))
}

/// Cuts `length` bytes from `offset` into chunks of at most `chunk` bytes.
pub fn chunks(offset: u64, length: u64, chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    let chunk = chunk.max(1);
    let end = offset.saturating_add(length);
    (0..length.div_ceil(chunk)).map(move |i| {
        let at = offset + i * chunk;
        (at, chunk.min(end - at))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_count_each_byte_once() {
        let mut r = Ranges::new();
        r.insert(10, 5);
        r.insert(0, 5);
        assert_eq!(r.iter().collect::<Vec<_>>(), [(0, 5), (10, 5)]);
        assert_eq!(r.missing(20), [(5, 5), (15, 5)]);
        r.insert(5, 5); // touches both
        assert_eq!(r.iter().collect::<Vec<_>>(), [(0, 15)]);
        r.insert(3, 4); // inside
        assert_eq!(r.held(), 15);
        assert!(!r.covers(16) && r.covers(15));
        assert_eq!(Ranges::from_text(&r.to_text()), Some(r));
        assert_eq!(Ranges::from_text("1+x"), None);
    }

    #[test]
    fn scattered_chunks_stop_at_the_span_limit_but_touching_ones_go_on() {
        let mut r = Ranges::new();
        let size = 4 * MAX_SPANS as u64;
        for i in 0..MAX_SPANS as u64 {
            assert_eq!(r.check_chunk(size, 2 * i, 1), Ok(()));
            r.insert(2 * i, 1);
        }
        let next = 2 * MAX_SPANS as u64;
        assert_eq!(r.check_chunk(size, next + 1, 1), Err(ErrorCode::BadRange));
        // Touching a span, filling a gap, or overlapping: no new span.
        assert_eq!(r.check_chunk(size, next - 1, 1), Ok(()));
        assert_eq!(r.check_chunk(size, 1, 1), Ok(()));
        assert_eq!(r.check_chunk(size, 0, 3), Ok(()));
        assert_eq!(r.check_chunk(size, size, 1), Err(ErrorCode::BadRange));
    }

    #[test]
    fn download_ranges_and_chunks() {
        assert_eq!(download_range(10, 0, 0), Ok((0, 10)));
        assert_eq!(download_range(10, 10, 0), Ok((10, 0)));
        assert_eq!(download_range(10, 11, 0), Err(ErrorCode::BadRange));
        assert_eq!(download_range(10, 5, 6), Err(ErrorCode::BadRange));
        assert_eq!(check_chunk(10, u64::MAX, 2), Err(ErrorCode::BadRange));
        assert_eq!(chunks(5, 10, 4).collect::<Vec<_>>(), [(5, 4), (9, 4), (13, 2)]);
        assert_eq!(chunks(0, 0, 4).count(), 0);
    }
}
