//! Proptest strategies for every frame type of `baatkaro-proto`.
//!
//! Every value is built through the crate's public constructors (`new`,
//! `from_bytes`, struct literals of public fields) from inputs that are valid by
//! construction, so an `expect` here failing means a constructor refused a value the
//! documented grammar allows. Enum-valued fields are picked from the crate's `ALL`
//! lists, so a keyword added to the crate is generated without touching this file.
//!
//! Besides valid frames, the module builds the hostile inputs the decoder tests need:
//! biased noise, garbage lines, complete-but-bad frames and one-byte edits.
//!
//! Every strategy is returned boxed: unboxed, the value trees of the nested
//! `prop_oneof!`s reach tens of KiB and overflow a test thread's stack in debug builds.

use baatkaro_proto::{
    Command, Conversation, DoneVerb, Encode, ErrorCode, Event, Failure, Feature, Features, FileId,
    FileName, GroupName, HistoryRange, IdemKey, InviteOutcome, Item, JoinOutcome, JoinRule,
    LIMIT_VALUE_MAX, LINE_MAX, Limits, ListVerb, Membership, Note, OfferName, OfferStatus, OkReply,
    Password, Presence, Request, Role, ServerFrame, Sha256, Software, StoredEvent, TEXT_MAX, Tag,
    Text, TokenSecret, UserName, Verb, Versions,
};
use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::Union;

// ---------------------------------------------------------------------------
// Numbers

/// A u64 across the full range, biased to 0, 1, `u64::MAX` and decimal-width boundaries
/// (10^k and 10^k - 1), where an encoder or a number parser is most likely to slip.
pub(crate) fn any_u64() -> BoxedStrategy<u64> {
    prop_oneof![
        2 => Just(0u64),
        1 => Just(1u64),
        2 => Just(u64::MAX),
        1 => Just(u64::MAX - 1),
        1 => (0u32..=19).prop_map(|k| 10u64.pow(k)),
        1 => (1u32..=19).prop_map(|k| 10u64.pow(k) - 1),
        3 => 0u64..1_000,
        6 => any::<u64>(),
    ]
    .boxed()
}

/// A protocol version: 1..=65535, biased to the ends.
fn version() -> BoxedStrategy<u16> {
    prop_oneof![
        2 => Just(1u16),
        1 => Just(u16::MAX),
        3 => 1u16..=20,
        3 => 1u16..=u16::MAX,
    ]
    .boxed()
}

// ---------------------------------------------------------------------------
// Atoms

fn name_string() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-z][a-z0-9_.-]{0,31}",
        1 => "[a-z]",
        1 => "[a-z][a-z0-9_.-]{31}",
    ]
    .boxed()
}

/// A valid user name: a lowercase letter, then up to 31 of `a-z 0-9 _ . -`.
pub(crate) fn user_name() -> BoxedStrategy<UserName> {
    name_string().prop_map(|s| UserName::new(&s).expect("name grammar")).boxed()
}

/// A valid group name (same alphabet as a user name).
pub(crate) fn group_name() -> BoxedStrategy<GroupName> {
    name_string().prop_map(|s| GroupName::new(&s).expect("name grammar")).boxed()
}

/// A valid request tag: 1..=32 of `A-Z a-z 0-9 _ . -`.
pub(crate) fn tag() -> BoxedStrategy<Tag> {
    prop_oneof![
        6 => "[A-Za-z0-9_.-]{1,32}",
        1 => "[A-Za-z0-9_.-]{32}",
    ]
    .prop_map(|s| Tag::new(&s).expect("tag grammar"))
    .boxed()
}

/// A valid idempotency key: 1..=64 of `A-Z a-z 0-9 _ . - :`.
pub(crate) fn idem_key() -> BoxedStrategy<IdemKey> {
    prop_oneof![
        6 => "[A-Za-z0-9_.:-]{1,64}",
        1 => "[A-Za-z0-9_.:-]{64}",
    ]
    .prop_map(|s| IdemKey::new(&s).expect("idem-key grammar"))
    .boxed()
}

/// A valid file id: 1..=64 of `A-Z a-z 0-9 _ -`.
pub(crate) fn file_id() -> BoxedStrategy<FileId> {
    prop_oneof![
        6 => "[A-Za-z0-9_-]{1,64}",
        1 => "[A-Za-z0-9_-]{64}",
    ]
    .prop_map(|s| FileId::new(&s).expect("file-id grammar"))
    .boxed()
}

/// A valid software name: 1..=64 of `A-Z a-z 0-9 _ . - / +`.
pub(crate) fn software() -> BoxedStrategy<Software> {
    prop_oneof![
        6 => "[A-Za-z0-9_./+-]{1,64}",
        1 => "[A-Za-z0-9_./+-]{64}",
    ]
    .prop_map(|s| Software::new(&s).expect("software grammar"))
    .boxed()
}

/// A valid feature name: 1..=24 of `a-z 0-9 -`.
pub(crate) fn feature() -> BoxedStrategy<Feature> {
    prop_oneof![
        6 => "[a-z0-9-]{1,24}",
        1 => "[a-z0-9-]{24}",
    ]
    .prop_map(|s| Feature::new(&s).expect("feature grammar"))
    .boxed()
}

// ---------------------------------------------------------------------------
// Free-form values

/// A character allowed in text: anything but a control character, TAB excepted.
/// Mostly printable ASCII, with TAB, multi-byte characters (é, 漢, emoji), format and
/// separator characters that are not controls, and arbitrary non-control scalars.
fn text_char() -> BoxedStrategy<char> {
    prop_oneof![
        10 => (0x20u8..=0x7e).prop_map(char::from),
        1 => Just('\t'),
        2 => select(vec![
            'é', 'ß', 'ñ', '漢', '字', 'क', 'ह', '😀', '🎉', '👩', '\u{a0}', '\u{ad}', '\u{200b}',
            '\u{200d}', '\u{2028}', '\u{2029}', '\u{feff}', '\u{fffd}', '\u{10ffff}',
        ]),
        2 => any::<char>().prop_map(|c| if c.is_control() { '¿' } else { c }),
    ]
    .boxed()
}

/// Cuts `s` to at most `max` bytes on a character boundary, keeping at least one
/// character (every character is at most 4 bytes, below any maximum used here).
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let end = (1..=max)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or_else(|| s.chars().next().map_or(0, char::len_utf8));
        s.truncate(end);
    }
    s
}

/// Text as a string: 1 to a few hundred bytes usually, a few KiB sometimes, and now
/// and then anything up to exactly [`TEXT_MAX`] bytes.
fn text_string() -> BoxedStrategy<String> {
    prop_oneof![
        40 => vec(text_char(), 1..=120).prop_map(String::from_iter),
        4 => vec(text_char(), 120..=1_500).prop_map(String::from_iter),
        // Long texts from a repeated seed, cheap to generate and to shrink.
        1 => (vec(text_char(), 1..=8), 1..=TEXT_MAX).prop_map(|(seed, target)| {
            let seed = String::from_iter(seed);
            cut(seed.repeat(target / seed.len() + 1), target)
        }),
        // Exactly the maximum, ending in a 4-byte character.
        1 => Just(format!("{}😀", "a".repeat(TEXT_MAX - 4))),
    ]
    .boxed()
}

/// Valid message text.
pub(crate) fn text() -> BoxedStrategy<Text> {
    text_string().prop_map(|s| Text::new(&s).expect("text grammar")).boxed()
}

/// A valid file name: text of at most 255 bytes without `/` or `\`, and not `.` or `..`.
pub(crate) fn file_name() -> BoxedStrategy<FileName> {
    let c = text_char().prop_map(|c| if FileName::allows(c) { c } else { '_' });
    prop_oneof![
        8 => vec(c.clone(), 1..=40).prop_map(String::from_iter),
        2 => vec(c, 40..=300).prop_map(|v| cut(String::from_iter(v), FileName::MAX_LEN)),
        1 => select(vec!["...", ".a", "a.", "..a", ". .", " ", "\t", ".hidden", "漢字.txt"])
            .prop_map(str::to_owned),
    ]
    .prop_map(|mut s| {
        // The only two reserved names; anything longer made of dots is fine.
        if s == "." || s == ".." {
            s.push('x');
        }
        FileName::new(&s).expect("file name grammar")
    })
    .boxed()
}

/// A valid offered file name: a file name whose leading dot, if any, is made `_`.
pub(crate) fn offer_name() -> BoxedStrategy<OfferName> {
    file_name()
        .prop_map(|name| {
            let s = match name.as_str().strip_prefix('.') {
                Some(rest) => format!("_{rest}"),
                None => name.as_str().to_owned(),
            };
            OfferName::new(&s).expect("offer name grammar")
        })
        .boxed()
}

/// A password: 1..=64 arbitrary bytes (CR, LF, braces and invalid UTF-8 included).
pub(crate) fn password() -> BoxedStrategy<Password> {
    vec(any::<u8>(), 1..=64)
        .prop_map(|v| Password::from_bytes(Bytes::from(v)).expect("1..=64 bytes"))
        .boxed()
}

/// A note: 1..=256 bytes of printable ASCII and space, without `{` and `}`.
pub(crate) fn note() -> BoxedStrategy<Note> {
    let c = (0x20u8..=0x7e).prop_map(|b| match b {
        b'{' => '(',
        b'}' => ')',
        b => char::from(b),
    });
    prop_oneof![
        6 => vec(c.clone(), 1..=60),
        1 => vec(c.clone(), 60..=Note::MAX_LEN),
        1 => vec(c, Note::MAX_LEN),
    ]
    .prop_map(|v| Note::new(&String::from_iter(v)).expect("note grammar"))
    .boxed()
}

/// Arbitrary payload bytes (file chunks), possibly empty: often full of CR, LF and
/// braces, sometimes a few KiB.
pub(crate) fn data() -> BoxedStrategy<Bytes> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..=64),
        3 => vec(tricky_byte(), 0..=256),
        1 => vec(any::<u8>(), 0..=4_096),
    ]
    .prop_map(Bytes::from)
    .boxed()
}

/// A session token's secret: any 32 bytes.
pub(crate) fn secret() -> BoxedStrategy<TokenSecret> {
    any::<[u8; 32]>().prop_map(TokenSecret).boxed()
}

/// A network address: IPv4 and IPv6 as written, and odd strings of the alphabet.
pub(crate) fn address() -> BoxedStrategy<baatkaro_proto::Address> {
    prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(|ip| std::net::IpAddr::V4(ip).into()),
        any::<std::net::Ipv6Addr>().prop_map(|ip| std::net::IpAddr::V6(ip).into()),
        "[0-9a-f.:]{1,45}".prop_map(|s| baatkaro_proto::Address::new(&s).expect("alphabet")),
    ]
    .boxed()
}

/// A SHA-256 digest: any 32 bytes.
pub(crate) fn sha256() -> BoxedStrategy<Sha256> {
    any::<[u8; 32]>().prop_map(Sha256).boxed()
}

// ---------------------------------------------------------------------------
// Composite values

/// A version list: 1..=16 distinct versions, in any order.
pub(crate) fn versions() -> BoxedStrategy<Versions> {
    proptest::collection::btree_set(version(), 1..=Versions::MAX)
        .prop_map(Vec::from_iter)
        .prop_shuffle()
        .prop_map(|v| Versions::new(v).expect("1..=16 non-zero versions"))
        .boxed()
}

/// A feature list: 0..=8 features.
pub(crate) fn features() -> BoxedStrategy<Features> {
    vec(feature(), 0..=Features::MAX).prop_map(|v| Features::new(v).expect("at most 8")).boxed()
}

/// A limit's value: `limit-value = "0" / (%x31-39 *13DIGIT)`, with the edges likelier.
pub(crate) fn limit_value() -> BoxedStrategy<u64> {
    prop_oneof![
        1 => Just(LIMIT_VALUE_MAX),
        1 => (0u32..=13).prop_map(|k| 10u64.pow(k)),
        4 => any_u64().prop_map(|v| v % (LIMIT_VALUE_MAX + 1)),
    ]
    .boxed()
}

/// Limits with an arbitrary value for every key the crate knows.
pub(crate) fn limits() -> BoxedStrategy<Limits> {
    vec(limit_value(), Limits::KEYS.len())
        .prop_map(|values| {
            let mut limits = Limits::default();
            for (key, value) in Limits::KEYS.iter().zip(values) {
                assert!(limits.set(key.as_bytes(), value), "KEYS lists {key}");
            }
            limits
        })
        .boxed()
}

/// A conversation: a group's or a private one.
pub(crate) fn conversation() -> BoxedStrategy<Conversation> {
    prop_oneof![
        group_name().prop_map(Conversation::Group),
        user_name().prop_map(Conversation::Direct),
    ]
    .boxed()
}

/// A history range.
pub(crate) fn history_range() -> BoxedStrategy<HistoryRange> {
    prop_oneof![any_u64().prop_map(HistoryRange::After), Just(HistoryRange::Last),].boxed()
}

/// A HISTORY limit: a u32 of at least 1.
fn history_limit() -> BoxedStrategy<u32> {
    prop_oneof![Just(1u32), Just(u32::MAX), 1u32..=1_000, 1u32..=u32::MAX,].boxed()
}

/// A file offer's status.
pub(crate) fn offer_status() -> BoxedStrategy<OfferStatus> {
    prop_oneof![Just(OfferStatus::Need), any_u64().prop_map(OfferStatus::Done)].boxed()
}

/// An error code, any of [`ErrorCode::ALL`].
pub(crate) fn error_code() -> BoxedStrategy<ErrorCode> {
    select(ErrorCode::ALL).boxed()
}

/// A failure: `retry=` only for codes that allow it (SPEC.md, Appendix C), with or
/// without a note; or the code's default failure.
pub(crate) fn failure() -> BoxedStrategy<Failure> {
    prop_oneof![
        4 => (error_code(), option::of(any_u64()), option::of(note())).prop_map(
            |(code, retry, note)| Failure {
                code,
                retry_after: retry.filter(|_| code.has_retry()),
                note,
            }
        ),
        1 => error_code().prop_map(Failure::new),
    ]
    .boxed()
}

fn join_rule() -> BoxedStrategy<JoinRule> {
    select(JoinRule::ALL).boxed()
}

fn role() -> BoxedStrategy<Role> {
    select(Role::ALL).boxed()
}

fn presence() -> BoxedStrategy<Presence> {
    select(Presence::ALL).boxed()
}

// ---------------------------------------------------------------------------
// Requests

/// Every [`Command`] variant, equally likely.
pub(crate) fn command() -> BoxedStrategy<Command> {
    let g = group_name;
    let u = user_name;
    let arms: Vec<BoxedStrategy<Command>> = vec![
        (versions(), option::of(software()))
            .prop_map(|(versions, client)| Command::Hello { versions, client })
            .boxed(),
        (u(), password()).prop_map(|(user, password)| Command::Register { user, password }).boxed(),
        (u(), password()).prop_map(|(user, password)| Command::Login { user, password }).boxed(),
        any::<bool>().prop_map(|revoke| Command::Logout { revoke }).boxed(),
        Just(Command::Ping).boxed(),
        (g(), option::of(join_rule()))
            .prop_map(|(group, rule)| Command::Create { group, rule })
            .boxed(),
        (g(), option::of(text()))
            .prop_map(|(group, reason)| Command::Join { group, reason })
            .boxed(),
        g().prop_map(|group| Command::Requests { group }).boxed(),
        (g(), u()).prop_map(|(group, user)| Command::Approve { group, user }).boxed(),
        (g(), u()).prop_map(|(group, user)| Command::Reject { group, user }).boxed(),
        (g(), u()).prop_map(|(group, user)| Command::Invite { group, user }).boxed(),
        g().prop_map(|group| Command::Accept { group }).boxed(),
        g().prop_map(|group| Command::Decline { group }).boxed(),
        g().prop_map(|group| Command::Leave { group }).boxed(),
        (g(), u(), any::<bool>())
            .prop_map(|(group, user, ban)| Command::Kick { group, user, ban })
            .boxed(),
        (g(), u()).prop_map(|(group, user)| Command::Unban { group, user }).boxed(),
        (g(), u()).prop_map(|(group, user)| Command::Promote { group, user }).boxed(),
        (g(), u()).prop_map(|(group, user)| Command::Demote { group, user }).boxed(),
        (g(), u()).prop_map(|(group, user)| Command::Transfer { group, user }).boxed(),
        g().prop_map(|group| Command::TransferAccept { group }).boxed(),
        g().prop_map(|group| Command::TransferCancel { group }).boxed(),
        (g(), join_rule()).prop_map(|(group, rule)| Command::Rule { group, rule }).boxed(),
        g().prop_map(|group| Command::Delete { group }).boxed(),
        Just(Command::Groups).boxed(),
        Just(Command::GroupsWithOffers).boxed(),
        Just(Command::Conversations).boxed(),
        Just(Command::ConversationsWithMarkers).boxed(),
        (conversation(), any_u64()).prop_map(|(conv, seq)| Command::Read { conv, seq }).boxed(),
        g().prop_map(|group| Command::Bans { group }).boxed(),
        g().prop_map(|group| Command::Members { group }).boxed(),
        option::of(g()).prop_map(|group| Command::Online { group }).boxed(),
        (conversation(), idem_key(), text())
            .prop_map(|(to, key, text)| Command::Send { to, key, text })
            .boxed(),
        (conversation(), history_range(), history_limit())
            .prop_map(|(conv, range, limit)| Command::History { conv, range, limit })
            .boxed(),
        (conversation(), any_u64(), sha256(), offer_name())
            .prop_map(|(to, size, sha256, name)| Command::FileOffer { to, size, sha256, name })
            .boxed(),
        (file_id(), any_u64(), data())
            .prop_map(|(file, offset, data)| Command::FileChunk { file, offset, data })
            .boxed(),
        file_id().prop_map(|file| Command::FileStatus { file }).boxed(),
        file_id().prop_map(|file| Command::FileCommit { file }).boxed(),
        file_id().prop_map(|file| Command::FileCancel { file }).boxed(),
        conversation().prop_map(|conv| Command::Files { conv }).boxed(),
        (file_id(), any_u64(), any_u64())
            .prop_map(|(file, offset, length)| Command::FileGet { file, offset, length })
            .boxed(),
        (u(), any_u64(), secret())
            .prop_map(|(user, token, secret)| Command::Auth { user, token, secret })
            .boxed(),
        text().prop_map(|label| Command::Token { label }).boxed(),
        Just(Command::Tokens).boxed(),
        any_u64().prop_map(|token| Command::Revoke { token }).boxed(),
        (password(), password()).prop_map(|(old, new)| Command::Password { old, new }).boxed(),
        password().prop_map(|password| Command::DeleteAccount { password }).boxed(),
    ];
    Union::new(arms).boxed()
}

/// A request: any tag and any command.
pub(crate) fn request() -> BoxedStrategy<Request> {
    (tag(), command()).prop_map(|(tag, command)| Request { tag, command }).boxed()
}

// ---------------------------------------------------------------------------
// Server frames

/// Every [`OkReply`] variant, equally likely.
pub(crate) fn ok_reply() -> BoxedStrategy<OkReply> {
    let arms: Vec<BoxedStrategy<OkReply>> = vec![
        (version(), software(), features(), limits())
            .prop_map(|(version, server, features, limits)| OkReply::Hello {
                version,
                server,
                features,
                limits: Box::new(limits),
            })
            .boxed(),
        user_name().prop_map(|user| OkReply::Register { user }).boxed(),
        user_name().prop_map(|user| OkReply::Login { user }).boxed(),
        (group_name(), select(JoinOutcome::ALL))
            .prop_map(|(group, outcome)| OkReply::Join { group, outcome })
            .boxed(),
        (group_name(), user_name(), select(InviteOutcome::ALL))
            .prop_map(|(group, user, outcome)| OkReply::Invite { group, user, outcome })
            .boxed(),
        (conversation(), any_u64(), any_u64())
            .prop_map(|(conv, seq, time)| OkReply::Send { conv, seq, time })
            .boxed(),
        (conversation(), any_u64(), any_u64())
            .prop_map(|(conv, latest, oldest)| OkReply::History { conv, latest, oldest })
            .boxed(),
        (select(ListVerb::ALL), any_u64())
            .prop_map(|(verb, count)| OkReply::Listed { verb, count })
            .boxed(),
        (file_id(), offer_status())
            .prop_map(|(file, status)| OkReply::FileOffer { file, status })
            .boxed(),
        (file_id(), any_u64())
            .prop_map(|(file, received)| OkReply::FileChunk { file, received })
            .boxed(),
        (file_id(), any_u64(), any_u64())
            .prop_map(|(file, size, received)| OkReply::FileStatus { file, size, received })
            .boxed(),
        (file_id(), conversation(), any_u64())
            .prop_map(|(file, conv, seq)| OkReply::FileCommit { file, conv, seq })
            .boxed(),
        (file_id(), any_u64(), any_u64())
            .prop_map(|(file, offset, length)| OkReply::FileGet { file, offset, length })
            .boxed(),
        user_name().prop_map(|user| OkReply::Auth { user }).boxed(),
        (any_u64(), secret()).prop_map(|(token, secret)| OkReply::Token { token, secret }).boxed(),
        (conversation(), any_u64()).prop_map(|(conv, seq)| OkReply::Read { conv, seq }).boxed(),
        select(DoneVerb::ALL).prop_map(|verb| OkReply::Done { verb }).boxed(),
    ];
    Union::new(arms).boxed()
}

/// A HELLO reply with at least `min_features` features.
pub(crate) fn hello_frame(min_features: usize) -> BoxedStrategy<ServerFrame> {
    let features = vec(feature(), min_features..=Features::MAX)
        .prop_map(|v| Features::new(v).expect("at most 8"));
    (tag(), version(), software(), features, limits())
        .prop_map(|(tag, version, server, features, limits)| ServerFrame::Ok {
            tag,
            reply: OkReply::Hello { version, server, features, limits: Box::new(limits) },
        })
        .boxed()
}

/// Every [`StoredEvent`] variant, equally likely.
pub(crate) fn stored_event() -> BoxedStrategy<StoredEvent> {
    let head = || (group_name(), any_u64(), any_u64());
    let arms: Vec<BoxedStrategy<StoredEvent>> =
        vec![
            (conversation(), any_u64(), any_u64(), user_name(), text())
                .prop_map(|(conv, seq, time, from, text)| StoredEvent::Message {
                    conv,
                    seq,
                    time,
                    from,
                    text,
                })
                .boxed(),
            (
                (conversation(), any_u64(), any_u64(), user_name()),
                (file_id(), any_u64(), sha256(), file_name()),
            )
                .prop_map(|((conv, seq, time, from), (file, size, sha256, name))| {
                    StoredEvent::File { conv, seq, time, from, file, size, sha256, name }
                })
                .boxed(),
            (head(), user_name(), user_name())
                .prop_map(|((group, seq, time), user, by)| StoredEvent::Joined {
                    group,
                    seq,
                    time,
                    user,
                    by,
                })
                .boxed(),
            (head(), user_name())
                .prop_map(|((group, seq, time), user)| StoredEvent::Left { group, seq, time, user })
                .boxed(),
            (head(), user_name(), user_name())
                .prop_map(|((group, seq, time), user, by)| StoredEvent::Kicked {
                    group,
                    seq,
                    time,
                    user,
                    by,
                })
                .boxed(),
            (head(), user_name(), user_name())
                .prop_map(|((group, seq, time), user, by)| StoredEvent::Banned {
                    group,
                    seq,
                    time,
                    user,
                    by,
                })
                .boxed(),
            (head(), user_name(), role(), user_name())
                .prop_map(|((group, seq, time), user, role, by)| StoredEvent::RoleChanged {
                    group,
                    seq,
                    time,
                    user,
                    role,
                    by,
                })
                .boxed(),
            (head(), user_name(), user_name())
                .prop_map(|((group, seq, time), user, by)| StoredEvent::OwnershipOffered {
                    group,
                    seq,
                    time,
                    user,
                    by,
                })
                .boxed(),
            (head(), user_name(), user_name())
                .prop_map(|((group, seq, time), user, previous)| {
                    StoredEvent::OwnershipTransferred { group, seq, time, user, previous }
                })
                .boxed(),
            (head(), join_rule(), user_name())
                .prop_map(|((group, seq, time), rule, by)| StoredEvent::RuleChanged {
                    group,
                    seq,
                    time,
                    rule,
                    by,
                })
                .boxed(),
        ];
    Union::new(arms).boxed()
}

/// Every [`Item`] variant, equally likely.
pub(crate) fn item() -> BoxedStrategy<Item> {
    let arms: Vec<BoxedStrategy<Item>> = vec![
        stored_event().prop_map(Item::Stored).boxed(),
        (group_name(), user_name(), any_u64(), option::of(text()))
            .prop_map(|(group, user, time, reason)| Item::Request { group, user, time, reason })
            .boxed(),
        (group_name(), select(Membership::ALL), join_rule(), any_u64(), any_u64())
            .prop_map(|(group, membership, rule, members, latest)| Item::Group {
                group,
                membership,
                rule,
                members,
                latest,
            })
            .boxed(),
        (conversation(), any_u64())
            .prop_map(|(conv, latest)| Item::Conversation { conv, latest })
            .boxed(),
        (conversation(), any_u64(), any_u64(), any_u64())
            .prop_map(|(conv, latest, read, unread)| Item::ConversationMarked {
                conv,
                latest,
                read,
                unread,
            })
            .boxed(),
        (group_name(), select(Membership::ALL), join_rule(), any_u64(), any_u64(), user_name())
            .prop_map(|(group, membership, rule, members, latest, offer)| Item::GroupOffered {
                group,
                membership,
                rule,
                members,
                latest,
                offer,
            })
            .boxed(),
        (group_name(), user_name(), user_name())
            .prop_map(|(group, user, by)| Item::Ban { group, user, by })
            .boxed(),
        (group_name(), user_name(), role(), presence())
            .prop_map(|(group, user, role, presence)| Item::Member { group, user, role, presence })
            .boxed(),
        user_name().prop_map(|user| Item::Online { user }).boxed(),
        (file_id(), any_u64(), any_u64())
            .prop_map(|(file, offset, length)| Item::Have { file, offset, length })
            .boxed(),
        (file_id(), any_u64(), data())
            .prop_map(|(file, offset, data)| Item::Chunk { file, offset, data })
            .boxed(),
        ((any_u64(), any_u64(), any_u64(), any_u64()), address(), text())
            .prop_map(|((token, created, used, expires), address, label)| Item::Token {
                token,
                created,
                used,
                expires,
                address,
                label,
            })
            .boxed(),
    ];
    Union::new(arms).boxed()
}

/// Every [`Event`] variant, equally likely.
pub(crate) fn event() -> BoxedStrategy<Event> {
    let arms: Vec<BoxedStrategy<Event>> = vec![
        stored_event().prop_map(Event::Stored).boxed(),
        (group_name(), user_name(), any_u64(), option::of(text()))
            .prop_map(|(group, user, time, reason)| Event::JoinRequested {
                group,
                user,
                time,
                reason,
            })
            .boxed(),
        (group_name(), user_name(), any_u64())
            .prop_map(|(group, by, time)| Event::Invited { group, by, time })
            .boxed(),
        (group_name(), user_name())
            .prop_map(|(group, by)| Event::RequestApproved { group, by })
            .boxed(),
        (group_name(), user_name())
            .prop_map(|(group, by)| Event::RequestRejected { group, by })
            .boxed(),
        (group_name(), user_name())
            .prop_map(|(group, by)| Event::GroupDeleted { group, by })
            .boxed(),
        (user_name(), presence())
            .prop_map(|(user, presence)| Event::Presence { user, presence })
            .boxed(),
        (conversation(), any_u64()).prop_map(|(conv, seq)| Event::ReadMarker { conv, seq }).boxed(),
        failure().prop_map(Event::Error).boxed(),
        failure().prop_map(Event::Bye).boxed(),
    ];
    Union::new(arms).boxed()
}

/// Every [`ServerFrame`] variant: OK replies, ERR failures, items and events.
pub(crate) fn server_frame() -> BoxedStrategy<ServerFrame> {
    prop_oneof![
        (tag(), ok_reply()).prop_map(|(tag, reply)| ServerFrame::Ok { tag, reply }),
        (tag(), failure()).prop_map(|(tag, failure)| ServerFrame::Err { tag, failure }),
        (tag(), item()).prop_map(|(tag, item)| ServerFrame::Item { tag, item }),
        event().prop_map(ServerFrame::Event),
    ]
    .boxed()
}

/// Requests that carry a payload (possibly empty), one of each shape.
pub(crate) fn payload_request() -> BoxedStrategy<Request> {
    let command = prop_oneof![
        (user_name(), password()).prop_map(|(user, password)| Command::Login { user, password }),
        (group_name(), text())
            .prop_map(|(group, reason)| Command::Join { group, reason: Some(reason) }),
        (conversation(), idem_key(), text()).prop_map(|(to, key, text)| Command::Send {
            to,
            key,
            text
        }),
        (conversation(), any_u64(), sha256(), offer_name())
            .prop_map(|(to, size, sha256, name)| Command::FileOffer { to, size, sha256, name }),
        (file_id(), any_u64(), data()).prop_map(|(file, offset, data)| Command::FileChunk {
            file,
            offset,
            data
        }),
    ];
    (tag(), command).prop_map(|(tag, command)| Request { tag, command }).boxed()
}

/// Server frames that carry a payload (possibly empty), one of each shape.
pub(crate) fn payload_server_frame() -> BoxedStrategy<ServerFrame> {
    let message = (conversation(), any_u64(), any_u64(), user_name(), text()).prop_map(
        |(conv, seq, time, from, text)| StoredEvent::Message { conv, seq, time, from, text },
    );
    let file =
        (
            (conversation(), any_u64(), any_u64(), user_name()),
            (file_id(), any_u64(), sha256(), file_name()),
        )
            .prop_map(|((conv, seq, time, from), (file, size, sha256, name))| {
                StoredEvent::File { conv, seq, time, from, file, size, sha256, name }
            });
    let tagged_item = prop_oneof![
        message.clone().prop_map(Item::Stored),
        file.prop_map(Item::Stored),
        (group_name(), user_name(), any_u64(), text()).prop_map(|(group, user, time, reason)| {
            Item::Request { group, user, time, reason: Some(reason) }
        }),
        (file_id(), any_u64(), data()).prop_map(|(file, offset, data)| Item::Chunk {
            file,
            offset,
            data
        }),
    ];
    prop_oneof![
        (tag(), tagged_item).prop_map(|(tag, item)| ServerFrame::Item { tag, item }),
        message.prop_map(|m| ServerFrame::Event(Event::Stored(m))),
        (group_name(), user_name(), any_u64(), text()).prop_map(|(group, user, time, reason)| {
            ServerFrame::Event(Event::JoinRequested { group, user, time, reason: Some(reason) })
        }),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------
// Splitting a byte stream into pushes

/// How to cut a byte stream into the pieces pushed into a decoder.
#[derive(Clone, Debug)]
pub(crate) enum Split {
    /// Pieces of this many bytes (1: byte by byte).
    Every(usize),
    /// Cut at these positions (scaled to the stream's length).
    At(Vec<Index>),
}

/// A way of cutting a stream: byte by byte, in small fixed pieces, or at random points.
pub(crate) fn split() -> BoxedStrategy<Split> {
    prop_oneof![
        2 => Just(Split::Every(1)),
        1 => (2usize..=9).prop_map(Split::Every),
        6 => vec(any::<Index>(), 0..=24).prop_map(Split::At),
    ]
    .boxed()
}

/// The pieces `bytes` is cut into by `split`; their concatenation is `bytes`.
pub(crate) fn pieces<'a>(bytes: &'a [u8], split: &Split) -> Vec<&'a [u8]> {
    match split {
        Split::Every(n) => bytes.chunks((*n).max(1)).collect(),
        Split::At(cuts) => {
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.push(0);
            at.push(bytes.len());
            at.sort_unstable();
            at.dedup();
            at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
        }
    }
}

// ---------------------------------------------------------------------------
// Hostile input

/// Bytes that matter to the framer and the parsers.
const TRICKY: &[u8] = b"\r\n{} 0123456789*#@:=,\t\x00\x7f\x80\xff";

/// A byte, biased to the ones the framer and parsers treat specially.
pub(crate) fn tricky_byte() -> BoxedStrategy<u8> {
    prop_oneof![2 => any::<u8>(), 1 => select(TRICKY)].boxed()
}

/// Words that start or appear in valid frames: every verb, reply and event keyword.
fn words() -> Vec<&'static str> {
    let mut w: Vec<&'static str> = Verb::ALL.iter().map(|v| v.as_str()).collect();
    w.extend([
        "OK",
        "ERR",
        "*",
        "MSG",
        "FILE",
        "JOINED",
        "LEFT",
        "KICKED",
        "BANNED",
        "ROLE",
        "OFFERED",
        "OWNER",
        "RULE",
        "REQUESTED",
        "INVITED",
        "APPROVED",
        "REJECTED",
        "DELETED",
        "PRESENCE",
        "BYE",
        "REQUEST",
        "GROUP",
        "CONV",
        "MEMBER",
        "ONLINE",
        "HAVE",
        "CHUNK",
        "after",
        "last",
        "need",
        "done",
        "ban",
        "retry=",
        "features=",
    ]);
    w.extend(ErrorCode::ALL.iter().map(|c| c.as_str()));
    w.extend(Limits::KEYS.iter().map(|k| &k[..]));
    w
}

/// One piece of noise: random or special bytes, keywords, payload markers, numbers,
/// whole valid frames, or a long run without LF.
fn noise_piece() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 1..=16),
        3 => select(TRICKY).prop_map(|b| vec![b]),
        2 => Just(b"\r\n".to_vec()),
        1 => Just(b" ".to_vec()),
        3 => select(words()).prop_map(|w| w.as_bytes().to_vec()),
        2 => (0u64..=300).prop_map(|n| format!(" {{{n}}}\r\n").into_bytes()),
        1 => any_u64().prop_map(|n| format!(" {{{n}}}").into_bytes()),
        1 => any_u64().prop_map(|n| n.to_string().into_bytes()),
        1 => request().prop_map(|r| r.to_bytes().to_vec()),
        1 => server_frame().prop_map(|f| f.to_bytes().to_vec()),
        1 => (1usize..=1_500).prop_map(|n| vec![b'x'; n]),
        1 => ((LINE_MAX - 8)..=(LINE_MAX + 8)).prop_map(|n| vec![b'x'; n]),
    ]
    .boxed()
}

/// Up to 4 KiB of noise built from [`noise_piece`]s.
pub(crate) fn noise() -> BoxedStrategy<Vec<u8>> {
    vec(noise_piece(), 0..=48)
        .prop_map(|parts| {
            let mut out = parts.concat();
            out.truncate(4_096);
            out
        })
        .boxed()
}

/// Whether a line's content ends in something that may declare a payload: ` {digits}`.
/// Conservative: leading zeros and overlong numbers count too.
pub(crate) fn declares_payload(line: &[u8]) -> bool {
    let Some(inner) = line.strip_suffix(b"}") else {
        return false;
    };
    let Some(open) = inner.iter().rposition(|&b| b == b'{') else {
        return false;
    };
    let digits = &inner[open + 1..];
    open > 0
        && inner[open - 1] == b' '
        && !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
}

/// A byte that is not LF.
fn line_byte() -> BoxedStrategy<u8> {
    tricky_byte().prop_map(|b| if b == b'\n' { b'\r' } else { b }).boxed()
}

/// The start of a line that gets a parser past the tag and verb: a tag or `*`, a word,
/// a space.
fn plausible_start() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        2 => (tag(), select(words())).prop_map(|(t, w)| format!("{t} {w} ").into_bytes()),
        1 => (tag(), select(words())).prop_map(|(t, w)| format!("{t} OK {w} ").into_bytes()),
        1 => select(words()).prop_map(|w| format!("* {w} ").into_bytes()),
    ]
    .boxed()
}

/// A garbage line without its CRLF: non-empty, no LF, and no trailing payload marker.
/// Mostly short; sometimes within two bytes of [`LINE_MAX`] with its CRLF, or well
/// past it.
pub(crate) fn garbage_line() -> BoxedStrategy<Vec<u8>> {
    let body = prop_oneof![
        8 => vec(line_byte(), 1..=80),
        1 => vec(line_byte(), 1..=2 * LINE_MAX),
    ];
    // With a size, the line is padded (or cut) to that many bytes, CRLF included.
    let size = prop_oneof![
        4 => Just(None),
        1 => ((LINE_MAX - 2)..=(LINE_MAX + 2)).prop_map(Some),
    ];
    (plausible_start(), body, size)
        .prop_map(|(start, body, size)| {
            let mut line = [start, body].concat();
            if let Some(size) = size {
                line.resize(size - 2, b'x');
            }
            line
        })
        .prop_filter("declares a payload", |g| !declares_payload(g))
        .boxed()
}

/// A complete bad frame for a decoder whose payload limit is `limit`, and the error
/// code SPEC.md 2.3 requires for it, if its class fixes one (the other classes
/// may yield any error, or by chance form a valid frame).
///
/// Every class is self-delimiting, so that what follows it starts a new frame:
/// a garbage line; a line with a well-formed payload of at most `limit` bytes; a line
/// declaring more than `limit` bytes, followed by them; a line longer than
/// [`LINE_MAX`]; a line ending in a bare LF; a valid frame of either direction with
/// a one-byte edit of its line (before any payload marker).
pub(crate) fn bad_frame(limit: u64) -> BoxedStrategy<(Vec<u8>, Option<ErrorCode>)> {
    let limit = usize::try_from(limit).expect("small limit");
    let args = || vec(line_byte(), 0..=40);
    prop_oneof![
        2 => garbage_line().prop_map(|mut g| {
            g.extend_from_slice(b"\r\n");
            (g, None)
        }),
        2 => (plausible_start(), args(), vec(any::<u8>(), 0..=limit.min(300)))
            .prop_map(|(start, args, payload)| {
                let mut f = [start, args].concat();
                f.extend_from_slice(format!(" {{{}}}\r\n", payload.len()).as_bytes());
                f.extend_from_slice(&payload);
                f.extend_from_slice(b"\r\n");
                (f, None)
            }),
        2 => (plausible_start(), args(), 1usize..=300, vec(any::<u8>(), 1..=16))
            .prop_map(move |(start, args, extra, seed)| {
                let n = limit + extra;
                let mut f = [start, args].concat();
                f.extend_from_slice(format!(" {{{n}}}\r\n").as_bytes());
                f.extend(seed.iter().copied().cycle().take(n));
                f.extend_from_slice(b"\r\n");
                (f, Some(ErrorCode::PayloadTooLarge))
            }),
        1 => prop_oneof![
            vec(line_byte(), (LINE_MAX - 1)..=LINE_MAX + 8),
            vec(line_byte(), (LINE_MAX - 1)..=3 * LINE_MAX),
        ]
        .prop_map(|mut l| {
            l.extend_from_slice(b"\r\n");
            (l, Some(ErrorCode::LineTooLong))
        }),
        1 => vec(line_byte(), 0..=100).prop_map(|mut l| {
            if l.last() == Some(&b'\r') {
                l.pop();
            }
            l.push(b'\n');
            (l, Some(ErrorCode::BadLineEnd))
        }),
        3 => (encoded_frame(), mutation())
            .prop_filter_map("mutation declares a payload", |(frame, m)| {
                mutate_line(&frame, &m).map(|f| (f, None))
            }),
    ]
    .boxed()
}

/// The encoding of a valid request or server frame. Its payload may be over the
/// decoder's limit: the frame is then refused from its header and skipped, which is
/// one more non-fatal error.
fn encoded_frame() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        request().prop_map(|r| r.to_bytes().to_vec()),
        server_frame().prop_map(|f| f.to_bytes().to_vec()),
    ]
    .boxed()
}

/// The length of the first CRLF-terminated line of `bytes`, CRLF included.
pub(crate) fn line_len(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n").map(|i| i + 2)
}

/// The payload length of one encoded frame (0 if it has none).
pub(crate) fn payload_len(frame: &[u8]) -> usize {
    let line = line_len(frame).unwrap_or(frame.len());
    frame.len().saturating_sub(line + 2)
}

/// Where in a line an edit applies.
#[derive(Clone, Debug)]
pub(crate) enum Place {
    /// Any byte.
    Anywhere(Index),
    /// The first byte of a token (insertions go before it).
    TokenStart(Index),
    /// The last byte of a token (insertions go after it).
    TokenEnd(Index),
}

/// What an edit does.
#[derive(Clone, Debug)]
pub(crate) enum Edit {
    /// Overwrite the byte.
    Replace(u8),
    /// Insert a byte.
    Insert(u8),
    /// Remove the byte.
    Delete,
    /// Swap the case of an ASCII letter.
    FlipCase,
}

/// A one-byte edit of a line.
#[derive(Clone, Debug)]
pub(crate) struct Mutation {
    place: Place,
    edit: Edit,
}

/// A one-byte edit, biased to token boundaries and to bytes that make a line subtly
/// non-canonical: a second space, a leading zero, a sign, a separator, another case.
pub(crate) fn mutation() -> BoxedStrategy<Mutation> {
    let byte = prop_oneof![
        3 => select(&b"0 "[..]),
        2 => select(&b"0123456789,=:-+#@*AZaz\t\r{}"[..]),
        1 => any::<u8>(),
    ];
    let place = prop_oneof![
        any::<Index>().prop_map(Place::Anywhere),
        any::<Index>().prop_map(Place::TokenStart),
        any::<Index>().prop_map(Place::TokenEnd),
    ];
    let edit = prop_oneof![
        2 => byte.clone().prop_map(Edit::Replace),
        3 => byte.prop_map(Edit::Insert),
        2 => Just(Edit::Delete),
        1 => Just(Edit::FlipCase),
    ];
    (place, edit).prop_map(|(place, edit)| Mutation { place, edit }).boxed()
}

/// Applies `m` to an encoded frame's line content, leaving any payload marker, the
/// CRLF and the payload intact. An LF written into the line becomes a CR, so the
/// result is still one frame. `None` if the edit does not apply (no letter to flip,
/// the line would become empty) or the line would newly declare a payload (it would
/// then swallow what follows).
pub(crate) fn mutate_line(frame: &[u8], m: &Mutation) -> Option<Vec<u8>> {
    let line = line_len(frame)?;
    let content = &frame[..line - 2];
    // With a payload the line ends in ` {n}`; edit only before its space.
    let end = if line < frame.len() {
        content.iter().rposition(|&b| b == b'{')?.checked_sub(1)?
    } else {
        content.len()
    };
    if end == 0 {
        return None;
    }
    let spaces = || content[..end].iter().enumerate().filter(|(_, b)| **b == b' ').map(|(i, _)| i);
    // `at` is the byte edited; `insert_at` where a new byte goes.
    let (at, insert_at) = match &m.place {
        Place::Anywhere(i) => {
            let at = i.index(end);
            (at, at)
        }
        Place::TokenStart(i) => {
            let starts: Vec<usize> =
                std::iter::once(0).chain(spaces().map(|s| s + 1)).filter(|&s| s < end).collect();
            let at = starts[i.index(starts.len())];
            (at, at)
        }
        Place::TokenEnd(i) => {
            let ends: Vec<usize> =
                spaces().chain(std::iter::once(end)).filter(|&e| e > 0).collect();
            let after = ends[i.index(ends.len())];
            (after - 1, after)
        }
    };
    let no_lf = |b: u8| if b == b'\n' { b'\r' } else { b };
    let mut out = frame.to_vec();
    match m.edit {
        Edit::Replace(byte) => out[at] = no_lf(byte),
        Edit::Insert(byte) => out.insert(insert_at, no_lf(byte)),
        Edit::Delete if end > 1 => {
            out.remove(at);
        }
        Edit::FlipCase if out[at].is_ascii_alphabetic() => out[at] ^= 0x20,
        Edit::Delete | Edit::FlipCase => return None,
    }
    let new_line = line_len(&out)?;
    let declares = line == frame.len() && declares_payload(&out[..new_line - 2]);
    (!declares).then_some(out)
}

// ---------------------------------------------------------------------------
// Coverage

/// A label naming a frame's variant path, e.g. `Item/Stored/Message`, from its
/// derived `Debug` output (so non-exhaustive enums need no wildcard arm).
pub(crate) fn label(frame: &ServerFrame) -> String {
    fn head(debug: &str) -> &str {
        let end = debug.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(debug.len());
        &debug[..end]
    }
    fn nested(debug: &str) -> String {
        let name = head(debug);
        match debug.strip_prefix("Stored(") {
            Some(inner) => format!("{name}/{}", head(inner)),
            None => name.to_owned(),
        }
    }
    match frame {
        ServerFrame::Ok { reply, .. } => format!("Ok/{}", head(&format!("{reply:?}"))),
        ServerFrame::Err { .. } => "Err".to_owned(),
        ServerFrame::Item { item, .. } => format!("Item/{}", nested(&format!("{item:?}"))),
        ServerFrame::Event(e) => format!("Event/{}", nested(&format!("{e:?}"))),
    }
}
