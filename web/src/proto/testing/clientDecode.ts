/**
 * Test-only: reading what a client sends, the server's side of the codec, so that
 * tests can check the encoder by round trips (decode, encode, compare octets). The
 * page never imports it, so the bundle does not carry it.
 */

import { Cursor, fail, none, payloadFileName, payloadText, required } from "../cursor";
import { DecodeError } from "../errors";
import { FrameReader } from "../framer";
import { PAYLOAD_CEILING } from "../limits";
import { isTag, latin1, parseU64 } from "../syntax";
import { CLIENT_VERBS, type ClientVerb, type Command, type Request } from "../types";

const JOIN_RULES = ["approval", "open", "invite"] as const;

/** A streaming decoder of client frames, as a server reads them. */
export class ClientFrameReader extends FrameReader<Request> {
  /** @param maxPayload the longest payload accepted (default: the 16 MiB ceiling). */
  constructor(maxPayload: number = PAYLOAD_CEILING) {
    super(parseClientFrame, maxPayload);
  }
}

/**
 * Parses one whole client frame, `request = tag SP command`, with the error codes a
 * server answers (SPEC.md 8): `BAD_TAG`, `UNKNOWN_COMMAND`, `SYNTAX`, `BAD_NAME`,
 * `BAD_TEXT`, `BAD_FILE_NAME`.
 */
export function parseClientFrame(line: Uint8Array, payload: Uint8Array | undefined): Request {
  const c = new Cursor(latin1(line));
  const tag = c.first();
  if (!isTag(tag)) throw new DecodeError("BAD_TAG", "missing or invalid tag");
  try {
    return { tag, command: command(c, payload) };
  } catch (e) {
    if (e instanceof DecodeError) throw e.withTag(tag);
    throw e;
  }
}

function command(c: Cursor, p: Uint8Array | undefined): Command {
  if (c.done) fail("UNKNOWN_COMMAND", "missing verb");
  let verb: string;
  try {
    verb = c.arg();
  } catch {
    return fail("UNKNOWN_COMMAND", "missing verb");
  }
  if (!(CLIENT_VERBS as readonly string[]).includes(verb)) fail("UNKNOWN_COMMAND", "unknown command");
  const v = verb as ClientVerb;
  if (v === "REGISTER" || v === "LOGIN") {
    const user = c.name();
    c.end();
    return { verb: v, user, password: password(required(p)) };
  }
  if (v === "JOIN") {
    const group = c.name();
    c.end();
    return p === undefined ? { verb: v, group } : { verb: v, group, reason: payloadText(p) };
  }
  if (v === "SEND") {
    const to = c.conv();
    const key = c.idemKey();
    c.end();
    return { verb: v, to, key, text: payloadText(required(p)) };
  }
  if (v === "FILE-OFFER") {
    const to = c.conv();
    const size = c.num();
    const sha256 = c.hex64();
    c.end();
    return { verb: v, to, size, sha256, name: payloadFileName(required(p), true) };
  }
  if (v === "FILE-CHUNK") {
    const file = c.fileId();
    const offset = c.num();
    c.end();
    return { verb: v, file, offset, data: required(p) };
  }
  if (v === "TOKEN") {
    c.end();
    return { verb: v, label: payloadText(required(p)) };
  }
  if (v === "PASSWORD") {
    const oldLength = c.num();
    c.end();
    const both = required(p);
    if (oldLength < 1 || oldLength >= both.length) fail("SYNTAX", "the old password's length must leave a new password");
    return { verb: v, old: password(both.subarray(0, oldLength)), new: password(both.subarray(oldLength)) };
  }
  if (v === "DELETE-ACCOUNT") {
    c.end();
    return { verb: v, password: password(required(p)) };
  }
  none(p);
  const cmd = bare(v, c);
  c.end();
  return cmd;
}

/** The commands without payload. */
function bare(v: ClientVerb, c: Cursor): Command {
  switch (v) {
    case "HELLO": {
      const list = c.arg().split(",");
      const versions = list.map((s) => {
        const n = parseU64(s);
        if (n === undefined || n < 1n || n > 65535n) fail("SYNTAX", "version out of range");
        return Number(n);
      });
      if (versions.length > 16 || new Set(versions).size !== versions.length) fail("SYNTAX", "bad version list");
      const software = c.done ? undefined : c.software();
      return software === undefined ? { verb: v, versions } : { verb: v, versions, software };
    }
    case "AUTH":
      return { verb: v, user: c.name(), token: c.num(), secret: c.hex64() };
    case "LOGOUT":
      return c.done ? { verb: v } : (c.keyword(["revoke"]), { verb: v, revoke: true });
    case "PING":
    case "TOKENS":
      return { verb: v };
    case "CREATE": {
      const group = c.name();
      return c.done ? { verb: v, group } : { verb: v, group, rule: c.keyword(JOIN_RULES) };
    }
    case "RULE":
      return { verb: v, group: c.name(), rule: c.keyword(JOIN_RULES) };
    case "DELETE":
    case "REQUESTS":
    case "ACCEPT":
    case "DECLINE":
    case "LEAVE":
    case "TRANSFER-ACCEPT":
    case "TRANSFER-CANCEL":
    case "MEMBERS":
    case "BANS":
      return { verb: v, group: c.name() };
    case "APPROVE":
    case "REJECT":
    case "INVITE":
    case "UNBAN":
    case "PROMOTE":
    case "DEMOTE":
    case "TRANSFER":
      return { verb: v, group: c.name(), user: c.name() };
    case "KICK": {
      const group = c.name();
      const user = c.name();
      return c.done ? { verb: v, group, user } : (c.keyword(["ban"]), { verb: v, group, user, ban: true });
    }
    case "GROUPS":
      return c.done ? { verb: v } : (c.keyword(["offers"]), { verb: v, offers: true });
    case "CONVERSATIONS":
      return c.done ? { verb: v } : (c.keyword(["read"]), { verb: v, read: true });
    case "ONLINE":
      return c.done ? { verb: v } : { verb: v, group: c.name() };
    case "HISTORY": {
      const conv = c.conv();
      const word = c.keyword(["after", "last"]);
      const range = word === "last" ? ("last" as const) : { after: c.num() };
      const limit = c.num();
      if (limit < 1 || limit > 0xffff_ffff) fail("SYNTAX", "number out of range");
      return { verb: v, conv, range, limit };
    }
    case "FILE-STATUS":
    case "FILE-COMMIT":
    case "FILE-CANCEL":
      return { verb: v, file: c.fileId() };
    case "FILES":
      return { verb: v, conv: c.conv() };
    case "FILE-GET":
      return { verb: v, file: c.fileId(), offset: c.num(), length: c.num() };
    case "REVOKE":
      return { verb: v, token: c.num() };
    case "READ": {
      const conv = c.conv();
      const seq = c.big();
      return { verb: v, conv, seq: seq <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(seq) : seq };
    }
    default:
      return fail("UNKNOWN_COMMAND", `${v} takes a payload`);
  }
}

/** `password = 1*1024OCTET` */
function password(bytes: Uint8Array): Uint8Array {
  if (bytes.length < 1 || bytes.length > 1024) fail("SYNTAX", "a password is 1 to 1024 octets");
  return bytes;
}
