//! Helpers for writing frames: every encoder appends to a `BytesMut`.

use bytes::{BufMut, BytesMut};

use crate::types::Conversation;

/// Appends the pieces of a line.
pub(crate) trait Put {
    /// Appends raw bytes.
    fn raw(&mut self, bytes: &[u8]) -> &mut Self;
    /// Appends a space and then raw bytes.
    fn word(&mut self, bytes: &[u8]) -> &mut Self;
    /// Appends a space and a decimal number.
    fn num(&mut self, n: u64) -> &mut Self;
    /// Appends a space and a conversation (`#group` / `@user`).
    fn conv(&mut self, c: &Conversation) -> &mut Self;
    /// Ends the line: CRLF.
    fn end(&mut self);
    /// Ends the line with a payload: ` {n}` CRLF, the bytes, CRLF.
    fn end_with_payload(&mut self, payload: &[u8]);
    /// Ends the line with the marker of an `n`-byte payload written elsewhere:
    /// ` {n}` CRLF.
    fn end_with_marker(&mut self, n: usize);
}

impl Put for BytesMut {
    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.put_slice(bytes);
        self
    }

    fn word(&mut self, bytes: &[u8]) -> &mut Self {
        self.put_u8(b' ');
        self.put_slice(bytes);
        self
    }

    fn num(&mut self, n: u64) -> &mut Self {
        let mut buf = itoa::Buffer::new();
        self.word(buf.format(n).as_bytes())
    }

    fn conv(&mut self, c: &Conversation) -> &mut Self {
        let (sigil, name) = match c {
            Conversation::Group(g) => (b'#', g.as_bytes()),
            Conversation::Direct(u) => (b'@', u.as_bytes()),
        };
        self.put_u8(b' ');
        self.put_u8(sigil);
        self.put_slice(name);
        self
    }

    fn end(&mut self) {
        self.put_slice(b"\r\n");
    }

    fn end_with_payload(&mut self, payload: &[u8]) {
        self.reserve(payload.len() + 26);
        self.end_with_marker(payload.len());
        self.put_slice(payload);
        self.put_slice(b"\r\n");
    }

    fn end_with_marker(&mut self, n: usize) {
        let mut buf = itoa::Buffer::new();
        self.put_slice(b" {");
        self.put_slice(buf.format(n).as_bytes());
        self.put_slice(b"}\r\n");
    }
}
