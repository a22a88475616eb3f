use proptest::prelude::*;

use super::*;

/// A fresh file in a fresh directory.
fn scratch_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("content");
    (dir, path)
}

/// Bytes that differ from offset to offset, so a misplaced write shows.
fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| ((offset + i) * 31 % 251) as u8).collect()
}

/// Chunks of a file of `size` bytes, `chunk` each (the last one shorter).
fn chunks(size: u64, chunk: u64) -> Vec<(u64, usize)> {
    (0..size.div_ceil(chunk)).map(|k| (k * chunk, chunk.min(size - k * chunk) as usize)).collect()
}

#[test]
fn aligned_and_unaligned_writes_read_back_in_both_modes() {
    for direct in [true, false] {
        let (_dir, path) = scratch_file();
        let f = ContentFile::open_write(&path, direct).expect("open");
        // Whole blocks, a block and a bit, and an unaligned tail.
        let size = 3 * ALIGN as u64 + 700;
        for (offset, len) in chunks(size, ALIGN as u64 + 100) {
            f.write_at(&pattern(offset, len), offset).expect("write");
        }
        assert_eq!(f.file().metadata().expect("metadata").len(), size);
        let all = ContentFile::open_read(&path, direct).expect("open").read_at(0, size as usize);
        assert_eq!(all.expect("read"), pattern(0, size as usize), "direct: {direct}");
        assert_eq!(std::fs::read(&path).expect("plain read"), pattern(0, size as usize));
    }
}

#[test]
fn direct_io_is_not_used_unless_asked() {
    let (_dir, path) = scratch_file();
    let f = ContentFile::open_write(&path, false).expect("open");
    assert!(!f.is_direct());
    assert!(f.direct.is_none());
}

#[test]
fn reading_past_the_end_is_an_unexpected_eof() {
    for direct in [true, false] {
        let (_dir, path) = scratch_file();
        let f = ContentFile::open_write(&path, direct).expect("open");
        f.write_at(&pattern(0, 2 * ALIGN), 0).expect("write");
        for (offset, len) in [(0, 2 * ALIGN + 1), (ALIGN as u64, 2 * ALIGN), (3 * ALIGN as u64, 1)]
        {
            let e = f.read_at(offset, len).expect_err("past the end");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "direct {direct}: {offset}+{len}");
        }
        // Up to the end exactly is fine, from an aligned and an unaligned offset.
        assert_eq!(f.read_at(ALIGN as u64, ALIGN).expect("read"), pattern(ALIGN as u64, ALIGN));
        assert_eq!(f.read_at(5, 2 * ALIGN - 5).expect("read"), pattern(5, 2 * ALIGN - 5));
        assert!(f.read_at(2 * ALIGN as u64, 0).expect("empty read").is_empty());
    }
}

#[test]
fn a_large_unaligned_write_lands_whole() {
    let (_dir, path) = scratch_file();
    let f = ContentFile::open_write(&path, true).expect("open");
    let len = (4 << 20) + ALIGN;
    // One byte in, so that the bytes are not aligned in memory and must be copied.
    let mut data = vec![0u8];
    data.extend(pattern(ALIGN as u64, len));
    assert_ne!(data[1..].as_ptr().align_offset(ALIGN), 0);
    f.write_at(&data[1..], ALIGN as u64).expect("write");
    assert_eq!(f.read_at(ALIGN as u64, len).expect("read"), pattern(ALIGN as u64, len));
    // The hole before it reads as zeros.
    assert_eq!(f.read_at(0, ALIGN).expect("read"), vec![0u8; ALIGN]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Chunks of any size, written in any order (some twice), in either mode, give
    /// the file they describe; any range of it reads back as written.
    #[test]
    fn chunks_in_any_order_make_the_file(
        blocks in 0u64..24,
        tail in prop_oneof![Just(0u64), 1u64..ALIGN as u64],
        chunk_blocks in 1u64..6,
        chunk_extra in prop_oneof![Just(0u64), 1u64..64],
        order in any::<proptest::sample::Index>(),
        repeat in any::<proptest::sample::Index>(),
        direct in any::<bool>(),
        reads in proptest::collection::vec((any::<proptest::sample::Index>(), 0usize..3 * ALIGN), 1..8),
    ) {
        let size = blocks * ALIGN as u64 + tail;
        let mut pieces = chunks(size, chunk_blocks * ALIGN as u64 + chunk_extra);
        if !pieces.is_empty() {
            let k = order.index(pieces.len());
            pieces.rotate_left(k);
            let again = pieces[repeat.index(pieces.len())];
            pieces.push(again);
            pieces.reverse();
        }
        let (_dir, path) = scratch_file();
        let f = ContentFile::open_write(&path, direct).expect("open");
        for (offset, len) in pieces {
            f.write_at(&pattern(offset, len), offset).expect("write");
        }
        prop_assert_eq!(f.file().metadata().expect("metadata").len(), size);
        let back = ContentFile::open_read(&path, direct).expect("open");
        for (at, len) in reads {
            let offset = at.index(size as usize + 1) as u64;
            let len = len.min((size - offset) as usize);
            prop_assert_eq!(back.read_at(offset, len).expect("read"), pattern(offset, len));
        }
    }
}

#[test]
fn bytes_already_aligned_in_memory_are_written_as_they_are() {
    for direct in [true, false] {
        let (_dir, path) = scratch_file();
        let f = ContentFile::open_write(&path, direct).expect("open");
        let mut buf = Vec::new();
        let range = aligned_range(&mut buf, 3 * ALIGN).expect("aligned");
        buf[range.clone()].copy_from_slice(&pattern(ALIGN as u64, 3 * ALIGN));
        let data = &buf[range];
        assert_eq!(data.as_ptr().align_offset(ALIGN), 0);
        f.write_at(data, ALIGN as u64).expect("write");
        // And an unaligned view of the same bytes, elsewhere.
        f.write_at(&buf[1..1 + ALIGN], 8 * ALIGN as u64).expect("write");
        assert_eq!(
            f.read_at(ALIGN as u64, 3 * ALIGN).expect("read"),
            pattern(ALIGN as u64, 3 * ALIGN)
        );
        assert_eq!(f.read_at(8 * ALIGN as u64, ALIGN).expect("read"), &buf[1..1 + ALIGN]);
    }
}

#[test]
fn unaligned_reads_of_a_direct_file_read_the_blocks_around_them() {
    let (_dir, path) = scratch_file();
    let size = 5 * ALIGN + 300;
    let f = ContentFile::open_write(&path, true).expect("open");
    f.write_at(&pattern(0, size), 0).expect("write");
    let back = ContentFile::open_read(&path, true).expect("open");
    for (offset, len) in
        [(1, 10), (ALIGN as u64 - 1, 2), (4097, 3 * ALIGN), (5 * ALIGN as u64 + 1, 299)]
    {
        assert_eq!(
            back.read_at(offset, len).expect("read"),
            pattern(offset, len),
            "{offset}+{len}"
        );
    }
    let e = back.read_at(5 * ALIGN as u64 + 1, 300).expect_err("one past the end");
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn a_planted_link_or_fifo_is_refused_not_followed_or_waited_on() {
    let (dir, path) = scratch_file();
    let target = dir.path().join("victim");
    std::fs::write(&target, b"keep me").expect("write");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    for direct in [true, false] {
        let err = ContentFile::open_write_no_follow(&path, direct).expect_err("a link");
        // ELOOP: the last component is a symbolic link.
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
    }
    assert_eq!(std::fs::read(&target).expect("read"), b"keep me");
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    // The open returns at once (a FIFO opened to write only would wait for a reader),
    // and the caller sees what it got.
    let f = ContentFile::open_write_no_follow(&fifo, true).expect("open");
    let kind = f.file().metadata().expect("metadata").file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&kind));
    // An ordinary file opens, keeps its bytes, and writes land in it.
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"abc").expect("write");
    let f = ContentFile::open_write_no_follow(&plain, true).expect("open");
    f.write_at(b"d", 3).expect("write");
    assert_eq!(std::fs::read(&plain).expect("read"), b"abcd");
}
