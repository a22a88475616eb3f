/**
 * Reading what a server sends: {@link parseServerFrame} for one whole frame, and
 * {@link ServerFrameReader}, the streaming decoder a client feeds with the octets of
 * its WebSocket messages.
 */

import { Cursor, fail, none, payloadFileName, payloadText, required } from "./cursor";
import { DecodeError, type Failure, isErrorCode } from "./errors";
import { FrameReader } from "./framer";
import {
  ABSENT_LIMITS,
  LIMIT_KEYS,
  LIMIT_VALUE_MAX,
  LINE_MAX,
  type LimitKey,
  type Limits,
  PRE_HELLO_PAYLOAD,
  isFirstEditionKey,
  isLimitKey,
} from "./limits";
import { isErrorCodeToken, isFeature, isNote, isTag, latin1, parseU64 } from "./syntax";
import {
  DONE_VERBS,
  type DoneVerb,
  type Event,
  type Item,
  LIST_VERBS,
  type ListVerb,
  type OkReply,
  type ServerFrame,
  type StoredEvent,
} from "./types";

const JOIN_RULES = ["approval", "open", "invite"] as const;
const ROLES = ["owner", "admin", "member"] as const;
const MEMBERSHIPS = ["owner", "admin", "member", "invited", "requested"] as const;
const PRESENCES = ["online", "offline"] as const;

/**
 * A streaming decoder of server frames (SPEC.md sections 2 and 3). Feed it the octets
 * of each WebSocket message with `push`; set `maxPayload` to the HELLO reply's
 * `payload` once it has come (65,536 before, as SPEC.md 2.3 says). The line limit
 * is fixed by the protocol, so it stays at its default.
 */
export class ServerFrameReader extends FrameReader<ServerFrame> {
  /**
   * @param maxPayload the longest payload accepted, in octets.
   * @param maxLine the longest line, CRLF included (the protocol's 1,024).
   */
  constructor(maxPayload: number = PRE_HELLO_PAYLOAD, maxLine: number = LINE_MAX) {
    super(parseServerFrame, maxPayload, maxLine);
  }
}

/**
 * Parses one whole server frame: `tag SP ("OK" SP ok-reply / "ERR" SP failure /
 * item) / "*" SP event`. `line` is without payload marker and CRLF. Throws a
 * {@link DecodeError} carrying the frame's tag when it has a readable one: an unknown
 * error code or item makes the request it names fail, an unknown event is ignored
 * (SPEC.md sections 8 and 10).
 */
export function parseServerFrame(line: Uint8Array, payload: Uint8Array | undefined): ServerFrame {
  const c = new Cursor(latin1(line));
  const first = c.first();
  if (first === "*") {
    return { kind: "event", event: event(c, payload) };
  }
  if (!isTag(first)) {
    throw new DecodeError("BAD_TAG", "missing or invalid tag");
  }
  const tag = first;
  try {
    const word = c.arg();
    if (word === "OK") {
      none(payload);
      return { kind: "ok", tag, reply: okReply(c) };
    }
    if (word === "ERR") {
      none(payload);
      return { kind: "err", tag, failure: parseFailure(c) };
    }
    return { kind: "item", tag, item: item(word, c, payload) };
  } catch (e) {
    if (e instanceof DecodeError) throw e.withTag(tag);
    throw e;
  }
}

/** `failure = error-code [SP "retry=" number] [SP ":" note]` */
function parseFailure(c: Cursor): Failure {
  const code = c.arg();
  if (!isErrorCodeToken(code)) fail("SYNTAX", "malformed error code");
  // A code of a later edition fails its one request (SPEC.md 8): reported as an error.
  if (!isErrorCode(code)) fail("SYNTAX", `unknown error code ${code}`);
  let retryMs: number | undefined;
  let note: string | undefined;
  if (!c.done) {
    const rest = c.rest();
    let noteText: string | undefined = rest;
    if (rest.startsWith("retry=")) {
      const space = rest.indexOf(" ");
      const value = rest.slice(6, space === -1 ? undefined : space);
      const n = parseU64(value);
      if (n === undefined) fail("SYNTAX", "malformed retry hint");
      // A hint past 2^53 ms (285,000 years) means "not soon": it is held as the most a number can.
      retryMs = n > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(n);
      noteText = space === -1 ? undefined : rest.slice(space + 1);
    }
    if (noteText !== undefined) {
      if (!noteText.startsWith(":")) fail("SYNTAX", "expected ':note'");
      note = noteText.slice(1);
      if (!isNote(note)) fail("SYNTAX", "malformed note");
    }
  }
  return { code, ...(retryMs !== undefined && { retryMs }), ...(note !== undefined && { note }) };
}

/** `ok-reply`, after `OK`. */
function okReply(c: Cursor): OkReply {
  const verb = c.arg();
  if ((LIST_VERBS as readonly string[]).includes(verb)) {
    const count = c.num();
    c.end();
    return { verb: verb as ListVerb, count };
  }
  if ((DONE_VERBS as readonly string[]).includes(verb)) {
    c.end();
    return { verb: verb as DoneVerb };
  }
  let reply: OkReply;
  switch (verb) {
    case "HELLO":
      return hello(c);
    case "REGISTER":
    case "LOGIN":
    case "AUTH":
      reply = { verb, user: c.name() };
      break;
    case "JOIN":
      reply = { verb, group: c.name(), outcome: c.keyword(["joined", "pending"]) };
      break;
    case "INVITE":
      reply = { verb, group: c.name(), user: c.name(), outcome: c.keyword(["invited", "joined"]) };
      break;
    case "SEND":
      reply = { verb, conv: c.conv(), seq: c.num(), time: c.num() };
      break;
    case "HISTORY":
      reply = { verb, conv: c.conv(), latest: c.num(), oldest: c.num() };
      break;
    case "FILE-OFFER": {
      const file = c.fileId();
      const status = c.keyword(["need", "done"]);
      reply = status === "need" ? { verb, file, status } : { verb, file, status, seq: c.num() };
      break;
    }
    case "FILE-CHUNK":
      reply = { verb, file: c.fileId(), received: c.num() };
      break;
    case "FILE-STATUS":
      reply = { verb, file: c.fileId(), size: c.num(), received: c.num() };
      break;
    case "FILE-COMMIT":
      reply = { verb, file: c.fileId(), conv: c.conv(), seq: c.num() };
      break;
    case "FILE-GET":
      reply = { verb, file: c.fileId(), offset: c.num(), length: c.num() };
      break;
    case "TOKEN":
      reply = { verb, token: c.num(), secret: c.hex64() };
      break;
    case "READ":
      reply = { verb, conv: c.conv(), seq: c.num() };
      break;
    default:
      return fail("SYNTAX", `unknown reply ${JSON.stringify(verb)}`);
  }
  c.end();
  return reply;
}

/**
 * `hello-ok = "HELLO" SP version SP software [SP "features=" features]
 * 1*(SP hello-key "=" limit-value)`. Keys come in any order; unknown keys are
 * skipped (but must look like keys); a key of the first edition must be present,
 * a later one takes its "absent" value (SPEC.md 4.2 and 10).
 */
function hello(c: Cursor): OkReply {
  const version = c.num();
  if (version < 1 || version > 65535) fail("SYNTAX", "version out of range");
  const software = c.software();
  let features: string[] | undefined;
  const limits: Partial<Record<LimitKey, number>> = {};
  while (!c.done) {
    const pair = c.arg();
    const eq = pair.indexOf("=");
    if (eq === -1) fail("SYNTAX", "expected key=value");
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (!isFeature(key)) fail("SYNTAX", "malformed HELLO key");
    if (key === "features") {
      if (features !== undefined) fail("SYNTAX", "features listed twice");
      features = value.split(",");
      if (features.length > 8 || !features.every(isFeature)) fail("SYNTAX", "malformed feature list");
      continue;
    }
    const n = parseU64(value);
    const firstEdition = isLimitKey(key) && isFirstEditionKey(key);
    // The first edition's keys took any `number`, which older servers may still send.
    if (n === undefined || (!firstEdition && n > BigInt(LIMIT_VALUE_MAX))) {
      fail("SYNTAX", "limit value is not a number of at most 14 digits");
    }
    if (!isLimitKey(key)) continue;
    if (limits[key] !== undefined) fail("SYNTAX", `limit ${key} listed twice`);
    // Past 2^53 a limit is as good as none: it is held as the most a number can.
    limits[key] = n > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(n);
  }
  for (const key of LIMIT_KEYS) {
    if (limits[key] !== undefined) continue;
    const absent = ABSENT_LIMITS[key];
    if (absent === undefined) fail("SYNTAX", `HELLO reply lacks the limit ${key}`);
    limits[key] = absent;
  }
  return { verb: "HELLO", version, software, features: features ?? [], limits: limits as Limits };
}

/** `item`, after the tag; `verb` is its first word. */
function item(verb: string, c: Cursor, payload: Uint8Array | undefined): Item {
  const stored = storedEvent(verb, c, payload);
  if (stored) return stored;
  let item: Item;
  switch (verb) {
    case "REQUEST":
      return joinRequest("REQUEST", c, payload);
    case "GROUP": {
      none(payload);
      const group = c.name();
      const membership = c.keyword(MEMBERSHIPS);
      const rule = c.keyword(JOIN_RULES);
      const members = c.num();
      const latest = c.num();
      if (c.done) return { verb, group, membership, rule, members, latest };
      c.keyword(["offer"]);
      item = { verb, group, membership, rule, members, latest, offer: c.name() };
      break;
    }
    case "CONV": {
      none(payload);
      const conv = c.conv();
      const latest = c.num();
      if (c.done) return { verb, conv, latest };
      item = { verb, conv, latest, marker: { read: c.num(), unread: c.num() } };
      break;
    }
    case "MEMBER":
      none(payload);
      item = { verb, group: c.name(), user: c.name(), role: c.keyword(ROLES), presence: c.keyword(PRESENCES) };
      break;
    case "ONLINE":
      none(payload);
      item = { verb, user: c.name() };
      break;
    case "HAVE":
      none(payload);
      item = { verb, file: c.fileId(), offset: c.num(), length: c.num() };
      break;
    case "CHUNK":
      item = { verb, file: c.fileId(), offset: c.num(), data: required(payload) };
      break;
    case "TOKEN": {
      const token = c.num();
      const created = c.num();
      const used = c.num();
      const expires = c.num();
      const address = c.address();
      c.end();
      return { verb, token, created, used, expires, address, label: payloadText(required(payload)) };
    }
    case "BAN":
      none(payload);
      item = { verb, group: c.name(), user: c.name(), by: c.name() };
      break;
    default:
      return fail("UNKNOWN_COMMAND", `unknown item ${JSON.stringify(verb)}`);
  }
  c.end();
  return item;
}

/** `SP group-name SP user-name SP millis [payload-marker]`: REQUEST items and REQUESTED events. */
function joinRequest<V extends "REQUEST" | "REQUESTED">(verb: V, c: Cursor, payload: Uint8Array | undefined) {
  const group = c.name();
  const user = c.name();
  const time = c.num();
  c.end();
  if (payload === undefined) return { verb, group, user, time };
  return { verb, group, user, time, reason: payloadText(payload) };
}

/** `stored-event`, or `undefined` when `verb` names none. */
function storedEvent(verb: string, c: Cursor, payload: Uint8Array | undefined): StoredEvent | undefined {
  let e: StoredEvent;
  switch (verb) {
    case "MSG": {
      const conv = c.conv();
      const seq = c.num();
      const time = c.num();
      const from = c.name();
      c.end();
      return { verb, conv, seq, time, from, text: payloadText(required(payload)) };
    }
    case "FILE": {
      const conv = c.conv();
      const seq = c.num();
      const time = c.num();
      const from = c.name();
      const file = c.fileId();
      const size = c.num();
      const sha256 = c.hex64();
      c.end();
      return { verb, conv, seq, time, from, file, size, sha256, name: payloadFileName(required(payload), false) };
    }
    case "JOINED":
    case "KICKED":
    case "BANNED":
    case "OFFERED":
      none(payload);
      e = { verb, conv: c.groupConv(), seq: c.num(), time: c.num(), user: c.name(), by: c.name() };
      break;
    case "OWNER":
      none(payload);
      e = { verb, conv: c.groupConv(), seq: c.num(), time: c.num(), user: c.name(), previous: c.name() };
      break;
    case "LEFT":
      none(payload);
      e = { verb, conv: c.groupConv(), seq: c.num(), time: c.num(), user: c.name() };
      break;
    case "ROLE":
      none(payload);
      e = { verb, conv: c.groupConv(), seq: c.num(), time: c.num(), user: c.name(), role: c.keyword(ROLES), by: c.name() };
      break;
    case "RULE":
      none(payload);
      e = { verb, conv: c.groupConv(), seq: c.num(), time: c.num(), rule: c.keyword(JOIN_RULES), by: c.name() };
      break;
    default:
      return undefined;
  }
  c.end();
  return e;
}

/** `event`, after `*`. */
function event(c: Cursor, payload: Uint8Array | undefined): Event {
  const verb = c.arg();
  const stored = storedEvent(verb, c, payload);
  if (stored) return stored;
  let e: Event;
  switch (verb) {
    case "REQUESTED":
      return joinRequest("REQUESTED", c, payload);
    case "INVITED":
      none(payload);
      e = { verb, group: c.name(), by: c.name(), time: c.num() };
      break;
    case "APPROVED":
    case "REJECTED":
    case "DELETED":
      none(payload);
      e = { verb, group: c.name(), by: c.name() };
      break;
    case "PRESENCE":
      none(payload);
      e = { verb, user: c.name(), presence: c.keyword(PRESENCES) };
      break;
    case "READ":
      none(payload);
      e = { verb, conv: c.conv(), seq: c.num() };
      break;
    case "ERR":
    case "BYE":
      none(payload);
      return { verb, failure: parseFailure(c) };
    default:
      return fail("UNKNOWN_COMMAND", `unknown event ${JSON.stringify(verb)}`);
  }
  c.end();
  return e;
}
