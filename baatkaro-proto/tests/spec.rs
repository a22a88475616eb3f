//! Holds SPEC.md and the code together: every example transcript decodes and
//! re-encodes to the same bytes, and the spec's error and limit tables are exactly
//! the crate's `ErrorCode` and `Limits`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use baatkaro_proto::{
    Decode, Decoder, Encode, ErrorCode, Limits, PAYLOAD_CEILING, Request, ServerFrame, Verb,
};
use bytes::BytesMut;

const SPEC: &str = include_str!("../../SPEC.md");

/// One example transcript: the client's and the server's bytes, and where it starts.
struct Transcript {
    line: usize,
    client: Vec<u8>,
    server: Vec<u8>,
}

/// Extracts every fenced block that holds `C:` or `S:` lines.
fn transcripts() -> Vec<Transcript> {
    let mut out = Vec::new();
    let mut current: Option<Transcript> = None;
    for (n, line) in SPEC.lines().enumerate() {
        if line.starts_with("```") {
            match current.take() {
                Some(t) => {
                    if !t.client.is_empty() || !t.server.is_empty() {
                        out.push(t);
                    }
                }
                None => {
                    current =
                        Some(Transcript { line: n + 1, client: Vec::new(), server: Vec::new() })
                }
            }
            continue;
        }
        let Some(t) = current.as_mut() else { continue };
        if let Some(rest) = line.strip_prefix("C: ") {
            t.client.extend_from_slice(rest.as_bytes());
            t.client.extend_from_slice(b"\r\n");
        } else if let Some(rest) = line.strip_prefix("S: ") {
            t.server.extend_from_slice(rest.as_bytes());
            t.server.extend_from_slice(b"\r\n");
        }
    }
    assert!(current.is_none(), "SPEC.md has an unclosed code fence");
    out
}

/// Decodes `bytes` as a stream of `F` and checks that every frame re-encodes to
/// exactly the bytes it came from. Frames that fail to decode are returned as errors
/// (the spec shows bad requests next to their error replies).
fn replay<F: Decode + Encode + std::fmt::Debug>(
    bytes: &[u8],
    at: usize,
    side: &str,
) -> Vec<Result<F, baatkaro_proto::DecodeError>> {
    let mut decoder = Decoder::<F>::new(PAYLOAD_CEILING);
    decoder.push(bytes);
    let mut items = Vec::new();
    let mut offset = 0;
    loop {
        let before = decoder.buffered();
        let Some(item) = decoder.next_frame() else {
            break;
        };
        let span = &bytes[offset..offset + before - decoder.buffered()];
        offset += span.len();
        if let Ok(frame) = &item {
            let mut out = BytesMut::new();
            frame.encode(&mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(span),
                "SPEC.md transcript at line {at}: {side} frame does not re-encode to its bytes"
            );
        }
        items.push(item);
    }
    assert_eq!(
        decoder.buffered(),
        0,
        "SPEC.md line {at}: {side} bytes left over (payload length wrong?)"
    );
    items
}

#[test]
fn every_transcript_decodes_and_reencodes_exactly() {
    let all = transcripts();
    assert!(all.len() >= 20, "expected the spec's transcripts, found {}", all.len());
    let mut requests = Vec::new();
    let mut server = Vec::new();
    for t in &all {
        let mut frames = Vec::new();
        for item in replay::<ServerFrame>(&t.server, t.line, "server") {
            match item {
                Ok(f) => frames.push(f),
                Err(e) => panic!("SPEC.md transcript at line {}: server frame fails: {e}", t.line),
            }
        }
        for item in replay::<Request>(&t.client, t.line, "client") {
            match item {
                Ok(r) => requests.push(r),
                // A bad request must be answered in the transcript with the very error
                // code the decoder gives.
                Err(e) => {
                    let tag = e.tag.expect("the spec's bad requests have readable tags");
                    assert!(
                        frames.iter().any(|f| matches!(f,
                            ServerFrame::Err { tag: t2, failure } if *t2 == tag && failure.code == e.code)),
                        "SPEC.md line {}: request {tag} fails to decode with {}, but the transcript \
                         does not answer it with that code",
                        t.line,
                        e.code
                    );
                }
            }
        }
        server.extend(frames);
    }

    // Every command has an example.
    for verb in Verb::ALL {
        assert!(
            requests.iter().any(|r| r.command.verb() == *verb),
            "SPEC.md has no example of the {verb} command"
        );
    }
    // Every event has an example (matched by the verb that starts it on the wire).
    let event_lines: Vec<String> = server
        .iter()
        .filter(|f| matches!(f, ServerFrame::Event(_)))
        .map(|f| String::from_utf8_lossy(&f.to_bytes()).into_owned())
        .collect();
    for verb in [
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
        "READ",
        "ERR",
        "BYE",
    ] {
        let prefix = format!("* {verb} ");
        assert!(
            event_lines.iter().any(|l| l.starts_with(&prefix)),
            "SPEC.md has no example of the {verb} event"
        );
    }
}

/// Returns the table rows (cells trimmed, backticks removed) after `heading`.
fn table_after(heading: &str) -> Vec<Vec<String>> {
    let start = SPEC.find(heading).unwrap_or_else(|| panic!("SPEC.md lacks {heading}"));
    SPEC[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            l.trim_matches('|').split('|').map(|c| c.trim().trim_matches('`').to_owned()).collect()
        })
        .collect()
}

/// The rows of the first table after `heading`, cells trimmed but otherwise raw.
fn raw_rows(heading: &str) -> Vec<Vec<&'static str>> {
    let start = SPEC.find(heading).unwrap_or_else(|| panic!("SPEC.md lacks {heading}"));
    SPEC[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect()
}

#[test]
fn error_table_matches_error_code() {
    let rows = table_after("## Appendix C. Error codes");
    let codes: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let expected: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, expected, "Appendix C and ErrorCode list different codes or orders");
    for (row, code) in rows.iter().zip(ErrorCode::ALL) {
        let fatal = match row[1].as_str() {
            "closed" => true,
            "survives" => false,
            other => panic!("{code}: connection column says {other:?}"),
        };
        assert_eq!(fatal, code.is_fatal(), "{code}: connection column");
        assert_eq!(row[2] == "yes", code.has_retry(), "{code}: retry column");
        assert_eq!(row[3], code.text(), "{code}: meaning column");
        assert_eq!(ErrorCode::from_wire(code.as_str().as_bytes()), Some(*code));
    }
}

#[test]
fn limits_table_matches_limits() {
    let rows = table_after("## Appendix B. Limits");
    let keys: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(keys, Limits::KEYS, "Appendix B and Limits list different keys or orders");
    let defaults = Limits::default();
    for row in &rows {
        let value: u64 = row[1].parse().unwrap();
        assert_eq!(defaults.get(row[0].as_bytes()), Some(value), "default of {}", row[0]);
    }
}

#[test]
fn collected_abnf_names_every_verb_and_limit() {
    let start = SPEC.find("## Appendix A. Collected ABNF").unwrap();
    let abnf = &SPEC[start..SPEC.find("## Appendix B").unwrap()];
    for verb in Verb::ALL {
        assert!(abnf.contains(&format!("\"{verb}\"")), "Appendix A lacks the verb {verb}");
    }
    for key in Limits::KEYS {
        assert!(abnf.contains(&format!("\"{key}\"")), "Appendix A lacks the limit key {key}");
    }
}

/// Appendix D lists, for every group operation, the errors in the order the rules
/// check them: exactly `Op::possible_denials()`.
#[test]
fn transition_table_matches_the_group_machine() {
    use baatkaro_proto::group::Op;
    let u: baatkaro_proto::UserName = "u".parse().unwrap();
    let ops = [
        Op::Join { reason: None },
        Op::Approve { user: u },
        Op::Reject { user: u },
        Op::Invite { user: u },
        Op::Accept,
        Op::Decline,
        Op::Leave,
        Op::Kick { user: u, ban: false },
        Op::Unban { user: u },
        Op::Promote { user: u },
        Op::Demote { user: u },
        Op::Offer { user: u },
        Op::TakeOwnership,
        Op::CancelOffer,
        Op::SetRule { rule: baatkaro_proto::JoinRule::Open },
        Op::Delete,
    ];
    // Raw cells: the codes are the backticked words of the "checks" column.
    let rows = raw_rows("## Appendix D. Group transition table");
    assert_eq!(rows.len(), ops.len() + 1, "one row per operation, and CREATE");
    for op in &ops {
        let verb = op.verb().as_str();
        let row = rows
            .iter()
            .find(|r| r[0].split('`').nth(1) == Some(verb))
            .unwrap_or_else(|| panic!("Appendix D has no row for {verb}"));
        // Codes in the order of first mention (a rule can name one code twice).
        let mut listed: Vec<String> = Vec::new();
        for code in row[2].split('`').skip(1).step_by(2) {
            if !listed.iter().any(|c| c == code) {
                listed.push(code.to_owned());
            }
        }
        let expected: Vec<String> =
            op.possible_denials().iter().map(|d| d.code().as_str().to_owned()).collect();
        assert_eq!(listed, expected, "Appendix D's checks for {verb}");
    }
}

/// Section 4.1's table of which commands each session state allows is exactly what
/// `SessionState::refusal` enforces, with the refusal codes the section names.
#[test]
fn session_state_table_matches_the_session_machine() {
    use baatkaro_proto::session::SessionState;
    let rows = raw_rows("### 4.1 States");
    let ann: baatkaro_proto::UserName = "ann".parse().unwrap();
    let states = [
        ("greeting", SessionState::Greeting, ErrorCode::HelloRequired),
        ("authenticating", SessionState::Authenticating, ErrorCode::AuthRequired),
        ("logged in", SessionState::LoggedIn(ann), ErrorCode::WrongState),
    ];
    assert_eq!(rows.len(), states.len());
    for (row, (name, state, refused_with)) in rows.iter().zip(states) {
        assert!(row[0].starts_with(name), "row {row:?} is not the {name} state");
        let words = |s: &str| -> Vec<String> {
            s.split([',', ' '])
                .filter(|w| Verb::from_wire(w.as_bytes()).is_some())
                .map(str::to_owned)
                .collect()
        };
        let (listed, except) = match row[1].strip_prefix("every command except ") {
            Some(rest) => (None, words(rest)),
            None => (Some(words(row[1])), Vec::new()),
        };
        for verb in Verb::ALL {
            let allowed = match &listed {
                Some(list) => list.iter().any(|w| w == verb.as_str()),
                None => !except.iter().any(|w| w == verb.as_str()),
            };
            let expected = if allowed {
                None
            } else if *verb == Verb::Hello {
                Some(ErrorCode::WrongState)
            } else {
                Some(refused_with)
            };
            assert_eq!(state.refusal(*verb), expected, "{verb} in the {name} state");
        }
    }
}
