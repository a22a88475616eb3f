//! What a member checks about what it receives: each delivery's sender and order,
//! the time stamp a message carries, and at the end what was lost. Both targets
//! use it: BaatKaro orders a conversation by the server's sequence numbers, Redis
//! has none, so there each sender numbers its own messages.

use std::ops::Range;

use hdrhistogram::Histogram;

/// How many digits a message's time stamp has: two words of eight.
pub const STAMP_DIGITS: usize = 16;

/// The send time (µs since the run's epoch) that a message's text starts with:
/// [`STAMP_DIGITS`] digits, read a word of eight at a time.
pub fn stamp_of(text: &[u8]) -> Option<u64> {
    let digits = text.get(..STAMP_DIGITS)?;
    let (hi, lo) = digits.split_at(8);
    Some(eight_digits(hi)? * 100_000_000 + eight_digits(lo)?)
}

/// Writes `value` into `digits` as decimal digits with leading zeros (the low
/// digits only, if it has more). A `u64`: dividing a `u128` is a library call, and
/// sixteen of them for each message sent were 2.4 % of the generator at 10 × 10.
pub fn write_stamp(digits: &mut [u8], mut value: u64) {
    for d in digits.iter_mut().rev() {
        *d = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The value of eight ASCII digits, if they are digits.
pub fn eight_digits(digits: &[u8]) -> Option<u64> {
    const THREES: u64 = u64::from_ne_bytes([0x30; 8]);
    const HIGH_NIBBLES: u64 = u64::from_ne_bytes([0xf0; 8]);
    const SIXES: u64 = u64::from_ne_bytes([0x06; 8]);
    let word = u64::from_le_bytes(digits.try_into().ok()?);
    // Digits are the bytes whose high nibble is 3 and stays 3 when 6 is added.
    let digits_only =
        (word & HIGH_NIBBLES) == THREES && (word.wrapping_add(SIXES) & HIGH_NIBBLES) == THREES;
    let v = word.wrapping_sub(THREES);
    // Pairs of digits, then the four pairs weighted 10^6, 10^4, 10^2, 1.
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let pairs = 0x0000_00ff_0000_00ff;
    let value = ((v & pairs).wrapping_mul(100 + (1_000_000 << 32)))
        .wrapping_add(((v >> 16) & pairs).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    digits_only.then_some(value)
}

/// What one member saw.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Deliveries received, its own messages included.
    pub delivered: u64,
    /// Messages of an expected sender that never arrived.
    pub lost: u64,
    /// Deliveries at or before the last one in order: a repeat, or one that came late.
    pub duplicated: u64,
    /// Deliveries that skipped ahead of the next one in order.
    pub reordered: u64,
    /// Bytes written and read on the member's connection.
    pub bytes: u64,
}

/// One member's bookkeeping: who sent each delivery, whether it came in order, and
/// at the end how many of each expected sender's messages are missing.
///
/// Senders are known by their place among the conversation's members (a group's
/// members, or the members of a group slot that are paired off).
pub struct Tally {
    seen: Seen,
    /// Deliveries counted per sender.
    per_sender: Vec<u64>,
    /// Per sender, the number its next message should carry (sender-numbered order).
    next: Vec<u64>,
    /// The last sequence number seen (conversation-numbered order).
    last_seq: Option<u64>,
    /// This member's own place, if it is among the senders.
    me: Option<usize>,
    /// The places of the members that send into this member's conversation.
    expected: Range<usize>,
    /// Deliveries from no known sender at all.
    strangers: u64,
    /// How many messages each expected sender sends.
    messages: u64,
}

impl Tally {
    /// Bookkeeping for a member at place `me` among `senders` places, of which those
    /// in `expected` each send `messages` messages into its conversation.
    pub fn new(senders: usize, expected: Range<usize>, me: Option<usize>, messages: usize) -> Self {
        Tally {
            seen: Seen::default(),
            per_sender: vec![0; senders],
            next: vec![0; senders],
            last_seq: None,
            me,
            expected,
            strangers: 0,
            messages: messages as u64,
        }
    }

    /// How many deliveries this member waits for.
    pub fn expected_deliveries(&self) -> u64 {
        self.expected.len() as u64 * self.messages
    }

    /// What was seen so far.
    pub fn seen(&self) -> &Seen {
        &self.seen
    }

    /// Counts bytes on the wire.
    pub fn add_bytes(&mut self, n: usize) {
        self.seen.bytes += n as u64;
    }

    /// A delivery from the sender at place `sender` (`None`: from no known sender).
    /// Returns whether its latency counts: a member's own messages do not.
    pub fn delivered(&mut self, sender: Option<usize>) -> bool {
        self.seen.delivered += 1;
        match sender.and_then(|i| self.per_sender.get_mut(i)) {
            Some(count) => *count += 1,
            None => self.strangers += 1,
        }
        sender.is_some() && sender != self.me
    }

    /// A delivery from `sender` (as [`Tally::delivered`]) of a message that starts
    /// with its send time, arrived at `now`: its latency goes into `latencies`
    /// unless it is the member's own.
    pub fn delivered_at(
        &mut self,
        sender: Option<usize>,
        text: &[u8],
        now: u64,
        latencies: &mut Histogram<u64>,
    ) {
        if self.delivered(sender)
            && let Some(sent_at) = stamp_of(text)
        {
            let _ = latencies.record(now.saturating_sub(sent_at));
        }
    }

    /// Checks the order of a delivery numbered `seq` by the server: each one must
    /// be the last one's successor.
    pub fn in_conversation_order(&mut self, seq: u64) {
        match self.last_seq {
            Some(l) if seq <= l => self.seen.duplicated += 1,
            Some(l) if seq != l + 1 => self.seen.reordered += 1,
            _ => {}
        }
        self.last_seq = Some(self.last_seq.map_or(seq, |l| l.max(seq)));
    }

    /// Checks the order of a delivery that its sender (at place `sender`) numbered
    /// `k`, counting from 0: each sender's must come in order without a gap.
    pub fn in_sender_order(&mut self, sender: usize, k: u64) {
        let Some(next) = self.next.get_mut(sender) else { return };
        if k < *next {
            self.seen.duplicated += 1;
        } else {
            if k > *next {
                self.seen.reordered += 1;
            }
            *next = k + 1;
        }
    }

    /// What the member saw in all, with what never arrived counted as lost; an
    /// error if anything came from outside its conversation.
    pub fn finish(self) -> Result<Seen, String> {
        let mut seen = self.seen;
        let expected = self.per_sender.get(self.expected.clone()).unwrap_or_default();
        for &count in expected {
            seen.lost += self.messages.saturating_sub(count);
        }
        let outsiders =
            self.per_sender.iter().sum::<u64>() - expected.iter().sum::<u64>() + self.strangers;
        if outsiders > 0 {
            return Err(format!("{outsiders} messages from outside the conversation"));
        }
        Ok(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_refuse_what_is_not_digits() {
        let mut b = [b'x'; 20];
        write_stamp(&mut b[..STAMP_DIGITS], 1_234_567_890_123);
        assert_eq!(stamp_of(&b), Some(1_234_567_890_123));
        b[3] = b'a';
        assert_eq!(stamp_of(&b), None);
        assert_eq!(stamp_of(b"123"), None);
        assert_eq!(eight_digits(b"00000042"), Some(42));
        assert_eq!(eight_digits(b"0000004:"), None);
    }

    #[test]
    fn sender_numbered_deliveries_in_order_pass() {
        // Two senders, this member is sender 0: its own messages do not count
        // towards latency, its peer's do.
        let mut t = Tally::new(2, 0..2, Some(0), 3);
        for k in 0..3 {
            assert!(!t.delivered(Some(0)));
            t.in_sender_order(0, k);
            assert!(t.delivered(Some(1)));
            t.in_sender_order(1, k);
        }
        assert_eq!(t.expected_deliveries(), 6);
        let seen = t.finish().unwrap();
        assert_eq!((seen.delivered, seen.lost, seen.duplicated, seen.reordered), (6, 0, 0, 0));
    }

    #[test]
    fn a_gap_in_a_senders_numbers_is_a_loss_and_out_of_order() {
        let mut t = Tally::new(1, 0..1, None, 5);
        for k in [0, 1, 3, 4] {
            t.delivered(Some(0));
            t.in_sender_order(0, k);
        }
        let seen = t.finish().unwrap();
        assert_eq!((seen.lost, seen.reordered, seen.duplicated), (1, 1, 0));
    }

    #[test]
    fn a_repeat_and_a_late_arrival_are_counted() {
        let mut t = Tally::new(1, 0..1, None, 3);
        for k in [0, 0, 2, 1] {
            t.delivered(Some(0));
            t.in_sender_order(0, k);
        }
        let seen = t.finish().unwrap();
        // 0 twice, 2 before 1, and 1 after 2: all arrived, so nothing is lost.
        assert_eq!((seen.lost, seen.reordered, seen.duplicated), (0, 1, 2));
    }

    #[test]
    fn conversation_order_finds_repeats_and_gaps() {
        let mut t = Tally::new(1, 0..1, None, 4);
        for seq in [1, 2, 2, 4] {
            t.delivered(Some(0));
            t.in_conversation_order(seq);
        }
        let seen = t.finish().unwrap();
        assert_eq!((seen.lost, seen.reordered, seen.duplicated), (0, 1, 1));
    }

    #[test]
    fn a_delivery_from_outside_the_conversation_fails_the_member() {
        // A pair is places 2 and 3 of four; place 0 is another pair's.
        let mut t = Tally::new(4, 2..4, Some(2), 1);
        t.delivered(Some(3));
        t.delivered(Some(0));
        assert!(t.finish().is_err());
        let mut t = Tally::new(4, 2..4, Some(2), 1);
        t.delivered(None);
        assert!(t.finish().is_err());
    }
}
