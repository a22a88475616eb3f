//! Routing a committed batch's outputs to their connections: each connection the
//! batch reaches gets its share, in the batch's order, as one [`Output::Deliver`].
//!
//! A batch at load is mostly frames for a few recipient lists (a group's sessions,
//! shared by all its messages; a user's sessions). Each list is resolved to the
//! connections' places in the batch once, when the batch first names it; a frame
//! is then one push per recipient into a vector found by index, not a lookup of
//! the connection by id per frame and recipient. Shares are counted before they
//! are filled, so that all of them go in one vector allocated once at its size,
//! shared by the batch's connections with its frames and replies ([`Routed`]).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::ops::Range;
use std::sync::Arc;

use baatkaro_proto::{ErrorCode, Failure};

use super::{Hub, Out};
use crate::output::{ConnId, ConnIdHasher, Delivery, DiskJob, ListReply, Output, Routed};

/// A connection's place in the batch being routed (an index into [`Routing`]'s
/// per-connection vectors).
type Slot = u32;

/// No place yet: the connection has nothing in the batch being routed.
pub(super) const NO_SLOT: Slot = Slot::MAX;

/// Entries each of [`Routing`]'s vectors (and its map) keeps room for between
/// batches: a burst must not leave the hub holding its largest batch's routes for
/// good. (A batch of thousands of messages to a large group whose sessions change
/// between them names a list of its own for each: one slot per delivery.)
const ROUTING_KEEP: usize = 64 * 1024;

/// Scratch for routing, kept between batches so that its vectors are reused.
#[derive(Debug, Default)]
pub(super) struct Routing {
    /// Per slot: the connection.
    conns: Vec<ConnId>,
    /// Per slot: how many deliveries its share holds.
    counts: Vec<u32>,
    /// Per slot: where its share starts in the batch's deliveries.
    starts: Vec<u32>,
    /// Per slot: where its next delivery goes, while the shares are filled.
    next: Vec<u32>,
    /// Per output of the batch: where it goes.
    routes: Vec<Route>,
    /// The slots of every recipient list and reply of the batch, one after another.
    fan_slots: Vec<Slot>,
    /// Each recipient list of more than one connection, by the list's address: a
    /// list shared by many frames is resolved once. (Only addresses of lists the
    /// batch holds, so none is reused by another list while the batch is routed.)
    fans: HashMap<u64, Fan, BuildHasherDefault<ConnIdHasher>>,
    /// The last connection given one delivery, and its slot: a SEND's own frame
    /// follows its reply, so the frame's cause is found without a lookup.
    last_one: Option<(ConnId, Slot)>,
}

/// Where one output of the batch goes.
#[derive(Debug)]
struct Route {
    /// Its connections' slots: a range of `fan_slots`, empty if it has none.
    slots: Range<u32>,
    /// For a frame a connection's request caused: that connection's slot
    /// ([`NO_SLOT`] if it has none in the batch, or for anything else).
    cause: Slot,
}

/// A recipient list as the batch uses it.
#[derive(Debug)]
struct Fan {
    /// Its connections' slots: a range of `fan_slots`.
    slots: Range<u32>,
    /// How many of the batch's frames go to it.
    frames: u32,
}

impl Hub {
    /// Hands a batch's outputs to their connections: each connection gets its share,
    /// in the batch's order, as one message (see the module's doc).
    pub(super) fn deliver_all(&mut self, outs: &mut [Out]) {
        let mut r = std::mem::take(&mut self.routing);
        // Where each output goes, and how many deliveries each connection gets.
        let mut replies = 0;
        for out in outs.iter() {
            let route = match out {
                Out::Frame { to, cause, .. } => {
                    let slots = self.fan(&mut r, to);
                    let cause = match (*cause, r.last_one) {
                        (None, _) => NO_SLOT,
                        (Some((c, _)), Some((last, slot))) if c == last => slot,
                        (Some((c, _)), _) => self.conns.get(&c).map_or(NO_SLOT, |rec| rec.slot),
                    };
                    Route { slots, cause }
                }
                Out::Reply { conn, .. } => {
                    replies += 1;
                    Route { slots: self.one(&mut r, *conn), cause: NO_SLOT }
                }
                Out::List { conn, .. } | Out::Close { conn, .. } => {
                    Route { slots: self.one(&mut r, *conn), cause: NO_SLOT }
                }
                Out::DropUpload(file, req) => {
                    // The batch that forgot it is durable now.
                    let (file, req) = (*file, *req);
                    self.outputs.push_back(Output::Disk(DiskJob::Drop { file, req }));
                    Route { slots: 0..0, cause: NO_SLOT }
                }
            };
            r.routes.push(route);
        }
        // Each shared list's frames, counted once for each of its connections.
        for fan in r.fans.values() {
            for &slot in &r.fan_slots[fan.slots.start as usize..fan.slots.end as usize] {
                r.counts[slot as usize] += fan.frames;
            }
        }
        // Each share's place in the batch's one vector of deliveries, shares in slot
        // order; filled through a cursor per share.
        let mut total = 0u32;
        for &n in &r.counts {
            r.starts.push(total);
            total += n;
        }
        r.next.extend_from_slice(&r.starts);
        let mut routed = Routed {
            frames: Vec::with_capacity(outs.len()),
            // Counted, as pushing a batch's replies one by one grew the vector (and
            // copied it) several times a batch.
            results: Vec::with_capacity(replies),
            // Placeholders, each overwritten once below: the counts are exact (and
            // one left by a slip would name no frame, and be skipped).
            deliveries: vec![Delivery::Frame { index: u32::MAX, after: None }; total as usize],
            ..Routed::default()
        };
        for (out, route) in outs.iter_mut().zip(&r.routes) {
            let slots = &r.fan_slots[route.slots.start as usize..route.slots.end as usize];
            if let Out::Frame { bytes, cause, .. } = out {
                let index = routed.frames.len() as u32;
                // Moved, not cloned: the batch's outputs are cleared after this, and
                // a clone of a frame's bytes allocates a shared handle for them.
                routed.frames.push(std::mem::take(bytes));
                for &slot in slots {
                    let at = &mut r.next[slot as usize];
                    routed.deliveries[*at as usize] = Delivery::Frame { index, after: None };
                    *at += 1;
                }
                // The causing session gets it after its request's reply: its copy is
                // the last of its share so far, if it is among the frame's readers.
                let c = route.cause as usize;
                if let (Some((_, id)), Some(&at), Some(&first)) =
                    (cause, r.next.get(c), r.starts.get(c))
                    && at > first
                    && let Some(Delivery::Frame { index: last, after }) =
                        routed.deliveries.get_mut(at as usize - 1)
                    && *last == index
                {
                    *after = Some(*id);
                }
                continue;
            }
            let Some(&slot) = slots.first() else { continue };
            // A reply has one reader, so its result is taken, not cloned. What is
            // left in its place is never read; it has no note, as making one
            // (checking and copying its text) showed in every SEND's profile.
            let void = || Err(Failure { code: ErrorCode::Internal, retry_after: None, note: None });
            let delivery = match out {
                Out::Reply { id, result, .. } => {
                    let index = routed.results.len() as u32;
                    routed.results.push(std::mem::replace(result, void()));
                    Delivery::Reply { id: *id, result: index }
                }
                Out::List { id, items, result, .. } => {
                    let index = routed.lists.len() as u32;
                    routed.lists.push(ListReply {
                        id: *id,
                        items: std::mem::take(items),
                        result: std::mem::replace(result, void()),
                    });
                    Delivery::List(index)
                }
                Out::Close { failure, .. } => {
                    routed.closes.push(failure.clone());
                    Delivery::Close(routed.closes.len() as u32 - 1)
                }
                Out::Frame { .. } | Out::DropUpload(..) => continue,
            };
            let at = &mut r.next[slot as usize];
            routed.deliveries[*at as usize] = delivery;
            *at += 1;
        }
        debug_assert!(r.next.iter().zip(&r.starts).zip(&r.counts).all(|((n, s), c)| *n == s + c));
        let batch = Arc::new(routed);
        for ((&conn, &start), &count) in r.conns.iter().zip(&r.starts).zip(&r.counts) {
            if let Some(rec) = self.conns.get_mut(&conn) {
                rec.slot = NO_SLOT;
            }
            let share = start..start + count;
            self.outputs.push_back(Output::Deliver { conn, batch: batch.clone(), share });
        }
        r.conns.clear();
        r.counts.clear();
        r.starts.clear();
        r.next.clear();
        r.routes.clear();
        r.fan_slots.clear();
        r.fans.clear();
        r.last_one = None;
        r.conns.shrink_to(ROUTING_KEEP);
        r.counts.shrink_to(ROUTING_KEEP);
        r.starts.shrink_to(ROUTING_KEEP);
        r.next.shrink_to(ROUTING_KEEP);
        r.routes.shrink_to(ROUTING_KEEP);
        r.fan_slots.shrink_to(ROUTING_KEEP);
        r.fans.shrink_to(ROUTING_KEEP);
        self.routing = r;
    }

    /// The slots of a recipient list, resolved the first time the batch names it;
    /// counts the frame for them.
    fn fan(&mut self, r: &mut Routing, to: &Arc<[ConnId]>) -> Range<u32> {
        if let [conn] = to[..] {
            // One recipient (a user's only session): found as a reply's is, at
            // no more cost than remembering the list would take.
            return self.one(r, conn);
        }
        // The address without its low four bits, which are zero in every one (the
        // allocator's alignment) and would leave the map's hash (a multiplication,
        // whose low bits come from the key's) only one start slot in sixteen. Two
        // live lists still differ: each here takes 32 bytes at least (its counts
        // and two connections).
        let key = (Arc::as_ptr(to).cast::<ConnId>() as usize as u64) >> 4;
        if let Some(fan) = r.fans.get_mut(&key) {
            fan.frames += 1;
            return fan.slots.clone();
        }
        let start = r.fan_slots.len() as u32;
        for &conn in to.iter() {
            if let Some(slot) = self.slot(r, conn) {
                r.fan_slots.push(slot);
            }
        }
        let slots = start..r.fan_slots.len() as u32;
        r.fans.insert(key, Fan { slots: slots.clone(), frames: 1 });
        slots
    }

    /// The range of `fan_slots` of one connection's delivery (empty if it is gone);
    /// counts the delivery.
    #[inline]
    fn one(&mut self, r: &mut Routing, conn: ConnId) -> Range<u32> {
        let at = r.fan_slots.len() as u32;
        if let Some(slot) = self.slot(r, conn) {
            r.fan_slots.push(slot);
            r.counts[slot as usize] += 1;
            r.last_one = Some((conn, slot));
        }
        at..r.fan_slots.len() as u32
    }

    /// A connection's slot in the batch, given it at its first delivery; `None` if
    /// the connection is gone.
    #[inline]
    fn slot(&mut self, r: &mut Routing, conn: ConnId) -> Option<Slot> {
        let rec = self.conns.get_mut(&conn)?;
        if rec.slot == NO_SLOT {
            rec.slot = r.conns.len() as Slot;
            r.conns.push(conn);
            r.counts.push(0);
        }
        Some(rec.slot)
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap or assertion is a failed test.
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::hub::{HubConfig, Limits};
    use crate::store::Snapshot;
    use bytes::Bytes;

    #[derive(Debug)]
    struct Counting(u8);

    impl crate::Entropy for Counting {
        fn fill(&mut self, buf: &mut [u8]) -> Result<(), String> {
            self.0 = self.0.wrapping_add(1);
            buf.fill(self.0);
            Ok(())
        }
    }

    /// A frame a connection's request caused goes to that connection after the
    /// request's reply (SPEC.md 5.1): its copy, and only its copy, names the request
    /// (`after`), whether the cause is the last connection given a reply or found by
    /// its slot, whether its share starts first in the batch or later (the shares are
    /// filled through a cursor each), and not at all when it is not among the
    /// frame's readers. Every reply names its own result. (Fails if `after` is not
    /// set, set on another connection's copy, or on a copy that is not the frame's.)
    #[test]
    fn a_caused_frame_follows_its_reply_on_the_causing_connection_only() {
        use baatkaro_proto::session::RequestId;
        let cfg = HubConfig::new(Limits::default());
        let mut hub = Hub::new(cfg, Snapshot::default(), 1, 7, Box::new(Counting(0))).unwrap();
        for conn in 1..=4 {
            hub.handle_connected(conn, "127.0.0.1".parse().unwrap());
        }
        let all: Arc<[ConnId]> = Arc::from(vec![1, 2, 3]);
        let frame = |to: &Arc<[ConnId]>, i: usize, cause: Option<(ConnId, u64)>| Out::Frame {
            to: to.clone(),
            bytes: Bytes::from(format!("f{i}")),
            cause: cause.map(|(c, id)| (c, RequestId(id))),
        };
        // A reply's result carries its id, so that each is checked to be its own.
        let reply = |conn: ConnId, id: u64| Out::Reply {
            conn,
            id: RequestId(id),
            result: Err(Failure { code: ErrorCode::Internal, retry_after: Some(id), note: None }),
        };
        let mut outs = vec![
            frame(&all, 0, None),
            reply(2, 10),
            // The cause is the last connection given a reply.
            frame(&all, 1, Some((2, 10))),
            reply(3, 11),
            frame(&all, 2, None),
            // The cause does not read the frame (its last delivery is another
            // frame): nobody's copy waits.
            frame(&Arc::from(vec![1, 2]), 3, Some((3, 11))),
            reply(2, 12),
            reply(3, 13),
            // The cause is found by its slot (the last reply went to another).
            frame(&all, 4, Some((2, 12))),
            // The cause's share starts after every other's; one reader only.
            reply(4, 14),
            frame(&Arc::from(vec![4]), 5, Some((4, 14))),
        ];
        hub.deliver_all(&mut outs);
        let mut got = std::collections::BTreeMap::new();
        while let Some(out) = hub.outputs.pop_front() {
            let Output::Deliver { conn, batch, share } = out else { continue };
            let share: Vec<String> = batch
                .share(&share)
                .iter()
                .map(|d| match d {
                    Delivery::Frame { index, after } => {
                        let bytes = batch.frame(*index).unwrap();
                        let name = String::from_utf8(bytes.to_vec()).unwrap();
                        match after {
                            Some(id) => format!("{name}@{}", id.0),
                            None => name,
                        }
                    }
                    Delivery::Reply { id, result } => {
                        let result = batch.result(*result).unwrap().as_ref().unwrap_err();
                        assert_eq!(result.retry_after, Some(id.0), "another reply's result");
                        format!("r{}", id.0)
                    }
                    other => panic!("{other:?}"),
                })
                .collect();
            assert!(got.insert(conn, share.join(" ")).is_none(), "two shares for {conn}");
        }
        let want = [
            (1, "f0 f1 f2 f3 f4"),
            (2, "f0 r10 f1@10 f2 f3 r12 f4@12"),
            (3, "f0 f1 r11 f2 r13 f4"),
            (4, "r14 f5@14"),
        ];
        let want: std::collections::BTreeMap<ConnId, String> =
            want.into_iter().map(|(c, s)| (c, s.to_string())).collect();
        assert_eq!(got, want);
    }

    /// A batch of many frames, each to a list of its own (as when a group's
    /// sessions change between its messages), is routed whole, and the routing's
    /// scratch keeps no more than [`ROUTING_KEEP`] entries of it after (fails if
    /// the scratch keeps its largest batch's size).
    #[test]
    fn a_large_batch_leaves_no_large_scratch() {
        let cfg = HubConfig::new(Limits::default());
        let mut hub = Hub::new(cfg, Snapshot::default(), 1, 7, Box::new(Counting(0))).unwrap();
        let conns: Vec<ConnId> = (1..=10).collect();
        for &conn in &conns {
            hub.handle_connected(conn, "127.0.0.1".parse().unwrap());
        }
        let frames = 2 * ROUTING_KEEP / conns.len();
        let mut outs: Vec<Out> = (0..frames)
            .map(|i| Out::Frame {
                to: conns.iter().copied().collect(),
                bytes: Bytes::from(i.to_string()),
                cause: None,
            })
            .collect();
        hub.deliver_all(&mut outs);
        let mut delivered = 0;
        while let Some(out) = hub.outputs.pop_front() {
            let Output::Deliver { batch, share, .. } = out else { continue };
            let got: Vec<&Bytes> = batch
                .share(&share)
                .iter()
                .map(|d| match d {
                    Delivery::Frame { index, after: None } => batch.frame(*index).unwrap(),
                    other => panic!("{other:?}"),
                })
                .collect();
            let want: Vec<Bytes> = (0..frames).map(|i| Bytes::from(i.to_string())).collect();
            assert!(got.iter().copied().eq(want.iter()), "a share out of order or short");
            delivered += 1;
        }
        assert_eq!(delivered, conns.len());
        let r = &hub.routing;
        assert!(r.fan_slots.capacity() <= ROUTING_KEEP, "{}", r.fan_slots.capacity());
        assert!(r.routes.capacity() <= ROUTING_KEEP);
        assert!(r.starts.capacity() <= ROUTING_KEEP && r.next.capacity() <= ROUTING_KEEP);
        assert!(hub.conns.values().all(|rec| rec.slot == NO_SLOT));
    }
}
