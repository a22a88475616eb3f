//! Batches written record by record into the log's buffer ([`Log::begin`]) are
//! the batches [`Log::commit`] writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use baatkaro_eventlog::{BATCH_HEADER, Log, Options, Position, RECORD_HEADER};

#[test]
fn a_batch_written_record_by_record_reads_back_as_committed_and_undo_takes_one_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) =
        Log::open(dir.path(), Options { segment_bytes: 1 << 20, ..Options::default() }).unwrap();
    let first = log.commit(1, 0, [b"one".as_slice(), b"two"]).unwrap();

    let mut batch = log.begin().unwrap();
    assert!(batch.is_empty());
    let a = batch.record(|out| out.extend_from_slice(b"alpha")).unwrap();
    assert_eq!(a, BATCH_HEADER as u64);
    assert_eq!(batch.last_data(a), b"alpha");
    let b = batch.record(|out| out.extend_from_slice(b"a record taken back")).unwrap();
    assert_eq!(b, a + (RECORD_HEADER + 5) as u64);
    assert_eq!(batch.count(), 2);
    batch.undo(b);
    assert_eq!((batch.count(), batch.len()), (1, b));
    let c = batch.record(|out| out.extend_from_slice(b"")).unwrap();
    let d = batch.record(|out| out.extend_from_slice(b"delta")).unwrap();
    let at = batch.commit(2, 7).unwrap();
    assert!(at > first);

    let read = log.read_batch(at).unwrap();
    assert_eq!((read.number, read.flags), (2, 7));
    let records: Vec<(Position, Vec<u8>)> =
        read.records().map(|(p, data)| (p, data.to_vec())).collect();
    let expected = [(a, &b"alpha"[..]), (c, b""), (d, b"delta")];
    assert_eq!(records.len(), expected.len());
    for ((pos, data), (offset, want)) in records.iter().zip(expected) {
        assert_eq!(*pos, Position(at.0 + offset), "where the writer said it is");
        assert_eq!(data, want);
        assert_eq!(log.read_record(*pos).unwrap(), want);
    }
    // And the log opens again to the same end, nothing cut.
    let end = log.end();
    drop(log);
    let (log, recovery) =
        Log::open(dir.path(), Options { segment_bytes: 1 << 20, ..Options::default() }).unwrap();
    assert!(recovery.cut.is_none());
    assert_eq!(log.end(), end);
}

#[test]
fn undo_takes_back_only_the_last_record_so_the_batch_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_bytes: 1 << 20, ..Options::default() };
    let (mut log, _) = Log::open(dir.path(), options).unwrap();
    let mut batch = log.begin().unwrap();
    let a = batch.record(|out| out.extend_from_slice(b"alpha")).unwrap();
    let b = batch.record(|out| out.extend_from_slice(b"beta")).unwrap();
    // Not the last record, nor a record's start, nor a second undo of the same:
    // each is refused, and what the batch holds stays as its count says.
    batch.undo(a);
    batch.undo(a + 3);
    assert_eq!((batch.count(), batch.last_data(b)), (2, &b"beta"[..]));
    assert_eq!(batch.last_data(a), b"", "only the last record's data is given");
    batch.undo(b);
    batch.undo(b);
    assert_eq!(batch.count(), 1);
    let at = batch.commit(1, 0).unwrap();
    let read = log.read_batch(at).unwrap();
    let records: Vec<Vec<u8>> = read.records().map(|(_, data)| data.to_vec()).collect();
    assert_eq!(records, [b"alpha".to_vec()]);
    drop(log);
    let (log, recovery) = Log::open(dir.path(), options).unwrap();
    assert!(recovery.cut.is_none());
    assert_eq!(log.end().0, at.0 + (BATCH_HEADER + RECORD_HEADER + 5) as u64);
}
