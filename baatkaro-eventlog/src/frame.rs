//! The bytes of a batch on disk: a fixed header, then its records.
//!
//! ```text
//! header (32 bytes, little-endian)
//!   0  magic      b"BKev"
//!   4  body_len   u32   bytes of records that follow the header
//!   8  number     u64   the batch's number, given by the caller, increasing
//!  16  count      u32   how many records
//!  20  flags      u32   the caller's (the log gives them no meaning)
//!  24  checksum   u64   xxh3-64, seeded, of header bytes 0..24 and the body
//! record
//!   0  len        u32   bytes of data
//!   4  sum        u32   low 32 bits of the seeded xxh3-64 of the data
//!   8  data
//! ```
//!
//! The batch checksum is what recovery trusts: a batch is all there or not at all.
//! Each record carries its own, so that one record can be read and checked without
//! reading the rest of its batch.
//!
//! Every checksum is seeded with the log's own random seed (kept in each segment's
//! header), so a message whose text is itself a well-formed batch cannot pass for
//! one: recovery tells a torn last write from damage by whether a valid batch
//! follows the bad bytes, and that must not be forgeable from outside.

use xxhash_rust::xxh3::{Xxh3, xxh3_64_with_seed};

/// The first bytes of every batch.
pub(crate) const MAGIC: [u8; 4] = *b"BKev";
/// Bytes of a batch header.
pub const HEADER: usize = 32;
/// Bytes before each record's data.
pub const RECORD_HEADER: usize = 8;

/// A batch header as read, before its body is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) body_len: u32,
    pub(crate) number: u64,
    pub(crate) count: u32,
    pub(crate) flags: u32,
    pub(crate) checksum: u64,
}

impl Header {
    /// Reads a header; `None` if the magic is not there.
    pub(crate) fn parse(b: &[u8; HEADER]) -> Option<Header> {
        if b[0..4] != MAGIC {
            return None;
        }
        Some(Header {
            body_len: u32::from_le_bytes(le(&b[4..8])),
            number: u64::from_le_bytes(le(&b[8..16])),
            count: u32::from_le_bytes(le(&b[16..20])),
            flags: u32::from_le_bytes(le(&b[20..24])),
            checksum: u64::from_le_bytes(le(&b[24..32])),
        })
    }

    /// Whether `body` is the body this header was written with.
    pub(crate) fn checks(&self, seed: u64, header: &[u8; HEADER], body: &[u8]) -> bool {
        body.len() == self.body_len as usize && checksum(seed, &header[..24], body) == self.checksum
    }
}

/// The batch checksum: of the header's first 24 bytes and the body.
fn checksum(seed: u64, head: &[u8], body: &[u8]) -> u64 {
    let mut h = Xxh3::with_seed(seed);
    h.update(head);
    h.update(body);
    h.digest()
}

/// A record's own checksum.
pub(crate) fn record_sum(seed: u64, data: &[u8]) -> u32 {
    xxh3_64_with_seed(data, seed) as u32
}

/// Fixed-size little-endian field from a slice of exactly that size.
fn le<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(b);
    out
}

/// Encodes a batch into `out` (cleared first): header and records.
///
/// Returns `None`, leaving `out` in an unspecified state, when the body would not
/// fit the header's 32-bit length.
#[cfg(test)]
pub(crate) fn encode<'a>(
    out: &mut Vec<u8>,
    seed: u64,
    number: u64,
    flags: u32,
    records: impl IntoIterator<Item = &'a [u8]>,
) -> Option<()> {
    out.clear();
    start(out);
    let mut count: u32 = 0;
    for data in records {
        push_record(out, |out| out.extend_from_slice(data))?;
        count = count.checked_add(1)?;
    }
    finish(out, seed, number, flags, count)
}

/// Begins a batch at the end of `out`: room for its header.
pub(crate) fn start(out: &mut Vec<u8>) {
    out.resize(out.len() + HEADER, 0);
}

/// Appends a record whose data `write` appends to `out`, and returns where the
/// record (its header) starts. `None`, the record taken back, if its data is
/// longer than a record's 32-bit length. Its checksum is left zero until
/// [`finish`] writes it: the record does not check before then.
pub(crate) fn push_record(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) -> Option<usize> {
    let at = out.len();
    out.resize(at + RECORD_HEADER, 0);
    write(out);
    let Ok(len) = u32::try_from(out.len() - at - RECORD_HEADER) else {
        out.truncate(at);
        return None;
    };
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Some(at)
}

/// Writes the checksum of each record of `body` (pushed by [`push_record`]) into
/// its header.
///
/// Done for the whole batch once its records are in, rather than as each is
/// pushed: hashing data just written read it back 16 bytes at a time while the
/// stores that wrote it, in pieces of every size, were still pending, and the
/// loads could not be served from them (a store-forwarding stall each); over a
/// whole batch it reads from the cache. (`xxh3` on records was 2.4 % of the
/// server's core at 10 groups × 10, 1.5 % since.)
fn sum_records(seed: u64, body: &mut [u8]) {
    let mut at = 0;
    while let Some(head) = body.get(at..at + RECORD_HEADER) {
        let len = u32::from_le_bytes(le(&head[0..4])) as usize;
        // Every record was pushed whole: its data is within the body.
        let end = (at + RECORD_HEADER).saturating_add(len).min(body.len());
        debug_assert!(at + RECORD_HEADER + len <= body.len(), "a record past the body");
        let sum = record_sum(seed, &body[at + RECORD_HEADER..end]);
        body[at + 4..at + 8].copy_from_slice(&sum.to_le_bytes());
        at = end;
    }
    debug_assert_eq!(at, body.len(), "bytes after the last record");
}

/// Writes the header of the batch in `out` (begun by [`start`], `count` records
/// pushed since), and the checksum of each of its records: `out` must be the
/// header's room then exactly the records [`push_record`] appended. `None` if the
/// body does not fit the header's 32-bit length.
pub(crate) fn finish(out: &mut [u8], seed: u64, number: u64, flags: u32, count: u32) -> Option<()> {
    let body_len = u32::try_from(out.len() - HEADER).ok()?;
    out[0..4].copy_from_slice(&MAGIC);
    out[4..8].copy_from_slice(&body_len.to_le_bytes());
    out[8..16].copy_from_slice(&number.to_le_bytes());
    out[16..20].copy_from_slice(&count.to_le_bytes());
    out[20..24].copy_from_slice(&flags.to_le_bytes());
    sum_records(seed, &mut out[HEADER..]);
    let sum = checksum(seed, &out[..24], &out[HEADER..]);
    out[24..32].copy_from_slice(&sum.to_le_bytes());
    Some(())
}

/// The records of a checked body, each as its offset in the body (of its record
/// header) and its data. Stops at the first record that does not fit or fails its
/// checksum, yielding `Err(offset)`: a body whose batch checksum held never does.
pub(crate) fn records(
    seed: u64,
    body: &[u8],
) -> impl Iterator<Item = Result<(usize, &[u8]), usize>> {
    let mut at = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || at == body.len() {
            return None;
        }
        let start = at;
        let Some(head) = body.get(at..at + RECORD_HEADER) else {
            failed = true;
            return Some(Err(start));
        };
        let len = u32::from_le_bytes(le(&head[0..4])) as usize;
        let sum = u32::from_le_bytes(le(&head[4..8]));
        let data = body.get(at + RECORD_HEADER..).and_then(|rest| rest.get(..len));
        match data {
            Some(data) if record_sum(seed, data) == sum => {
                at += RECORD_HEADER + len;
                Some(Ok((start, data)))
            }
            _ => {
                failed = true;
                Some(Err(start))
            }
        }
    })
}

/// Checks one record read on its own: its header and data, as written.
pub(crate) fn check_record(seed: u64, head: &[u8; RECORD_HEADER], data: &[u8]) -> bool {
    u32::from_le_bytes(le(&head[0..4])) as usize == data.len()
        && u32::from_le_bytes(le(&head[4..8])) == record_sum(seed, data)
}

/// The data length a record header declares.
pub(crate) fn record_len(head: &[u8; RECORD_HEADER]) -> usize {
    u32::from_le_bytes(le(&head[0..4])) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(buf: &[u8]) -> [u8; HEADER] {
        le(&buf[..HEADER])
    }

    #[test]
    fn a_batch_reads_back_as_written() {
        let mut buf = Vec::new();
        let recs: [&[u8]; 3] = [b"one", b"", b"three"];
        encode(&mut buf, 9, 7, 0b10, recs).unwrap();
        let head = header_of(&buf);
        let h = Header::parse(&head).unwrap();
        assert_eq!((h.number, h.count, h.flags), (7, 3, 0b10));
        assert!(h.checks(9, &head, &buf[HEADER..]));
        assert!(!h.checks(8, &head, &buf[HEADER..]), "another log's seed");
        let got: Vec<_> = records(9, &buf[HEADER..]).map(|r| r.unwrap().1.to_vec()).collect();
        assert_eq!(got, [b"one".to_vec(), vec![], b"three".to_vec()]);
    }

    #[test]
    fn any_flipped_bit_fails_the_batch_checksum() {
        let mut buf = Vec::new();
        encode(&mut buf, 9, 1, 0, [b"hello".as_slice(), b"world"]).unwrap();
        for i in 0..buf.len() {
            if (4..8).contains(&i) {
                continue; // the length is checked by the reader against the body it read
            }
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                let head = header_of(&bad);
                let ok = Header::parse(&head).is_some_and(|h| h.checks(9, &head, &bad[HEADER..]));
                assert!(!ok, "byte {i} bit {bit} went unnoticed");
            }
        }
    }

    #[test]
    fn a_damaged_record_is_found_on_its_own() {
        let mut buf = Vec::new();
        encode(&mut buf, 9, 1, 0, [b"aa".as_slice(), b"bb"]).unwrap();
        let last = buf.len() - 1;
        buf[last] ^= 1;
        let got: Vec<_> = records(9, &buf[HEADER..]).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        assert_eq!(got[1], Err(RECORD_HEADER + 2));
    }
}
