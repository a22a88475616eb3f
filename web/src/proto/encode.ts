/**
 * Writing client commands (SPEC.md sections 4 and 6). {@link encodeRequest} checks
 * every field against the grammar first and throws an {@link EncodeError} with the
 * code the server would answer, so that a page never sends what the server must
 * refuse as malformed.
 */

import { EncodeError } from "./errors";
import { LINE_MAX, PRE_HELLO_PAYLOAD, TEXT_MAX } from "./limits";
import {
  U64_MAX,
  fileNameProblem,
  hasLoneSurrogate,
  isFileId,
  isHex64,
  isIdemKey,
  isName,
  isSoftware,
  isTag,
  isWireNumber,
  textProblem,
  utf8,
} from "./syntax";
import type { Command, Conv, JoinRule, Request, Secret } from "./types";
import { frameBytes, lineLength } from "./wire";

/** How {@link encodeRequest} bounds what it writes. */
export interface EncodeOptions {
  /**
   * The longest payload the server accepts: the HELLO reply's `payload`, or 65,536
   * (the default) before it has come (SPEC.md 2.3).
   */
  readonly maxPayload?: number;
}

/** The longest password, in octets (`password = 1*1024OCTET`). */
const PASSWORD_MAX = 1024;

/**
 * The octets of one client frame: line, CRLF and payload. Throws an
 * {@link EncodeError} for a tag or field the grammar does not allow, a payload over
 * `maxPayload`, or a line over {@link LINE_MAX}; nothing is written then.
 */
export function encodeRequest(request: Request, options: EncodeOptions = {}): Uint8Array {
  const { tag, command } = request;
  if (typeof tag !== "string" || !isTag(tag)) {
    throw new EncodeError("BAD_TAG", "tag", "must be 1 to 32 of A-Z a-z 0-9 _ . -");
  }
  const { words, payload } = body(command);
  const line = [tag, command.verb, ...words].join(" ");
  if (payload !== undefined) {
    const max = options.maxPayload ?? PRE_HELLO_PAYLOAD;
    if (payload.bytes.length > max) {
      throw new EncodeError(
        "PAYLOAD_TOO_LARGE",
        payload.field,
        `payload of ${payload.bytes.length} octets is over the server's limit of ${max}`,
      );
    }
  }
  const length = lineLength(line, payload?.bytes.length);
  if (length > LINE_MAX) {
    throw new EncodeError("LINE_TOO_LONG", "line", `line of ${length} octets is over ${LINE_MAX}`);
  }
  return frameBytes(line, payload?.bytes);
}

/** A command's arguments after its verb, and its payload. */
interface Body {
  readonly words: string[];
  readonly payload?: { readonly field: string; readonly bytes: Uint8Array };
}

function body(c: Command): Body {
  switch (c.verb) {
    case "HELLO": {
      const versions = c.versions;
      if (!Array.isArray(versions) || versions.length < 1 || versions.length > 16) {
        throw new EncodeError("SYNTAX", "versions", "must list 1 to 16 versions");
      }
      for (const v of versions) {
        if (!Number.isInteger(v) || v < 1 || v > 65535) {
          throw new EncodeError("SYNTAX", "versions", `version ${v} is not 1 to 65535`);
        }
      }
      if (new Set(versions).size !== versions.length) {
        throw new EncodeError("SYNTAX", "versions", "versions must be distinct");
      }
      const words = [versions.join(",")];
      if (c.software !== undefined) words.push(shaped("software", c.software, isSoftware, "1 to 64 of A-Z a-z 0-9 _ . - / +"));
      return { words };
    }
    case "REGISTER":
    case "LOGIN":
      return { words: [name("user", c.user)], payload: { field: "password", bytes: password("password", c.password) } };
    case "AUTH":
      return { words: [name("user", c.user), num("token", c.token), hex64("secret", c.secret)] };
    case "LOGOUT":
      return { words: c.revoke ? ["revoke"] : [] };
    case "PING":
    case "TOKENS":
      return { words: [] };
    case "CREATE":
      return { words: c.rule === undefined ? [name("group", c.group)] : [name("group", c.group), rule(c.rule)] };
    case "RULE":
      return { words: [name("group", c.group), rule(c.rule)] };
    case "JOIN":
      return c.reason === undefined
        ? { words: [name("group", c.group)] }
        : { words: [name("group", c.group)], payload: { field: "reason", bytes: text("reason", c.reason) } };
    case "DELETE":
    case "REQUESTS":
    case "ACCEPT":
    case "DECLINE":
    case "LEAVE":
    case "TRANSFER-ACCEPT":
    case "TRANSFER-CANCEL":
    case "MEMBERS":
    case "BANS":
      return { words: [name("group", c.group)] };
    case "APPROVE":
    case "REJECT":
    case "INVITE":
    case "UNBAN":
    case "PROMOTE":
    case "DEMOTE":
    case "TRANSFER":
      return { words: [name("group", c.group), name("user", c.user)] };
    case "KICK": {
      const words = [name("group", c.group), name("user", c.user)];
      if (c.ban) words.push("ban");
      return { words };
    }
    case "GROUPS":
      return { words: c.offers ? ["offers"] : [] };
    case "CONVERSATIONS":
      return { words: c.read ? ["read"] : [] };
    case "ONLINE":
      return { words: c.group === undefined ? [] : [name("group", c.group)] };
    case "HISTORY": {
      const range = c.range === "last" ? ["last"] : ["after", num("range.after", c.range?.after)];
      if (!Number.isInteger(c.limit) || c.limit < 1 || c.limit > 0xffff_ffff) {
        throw new EncodeError("SYNTAX", "limit", "must be 1 to 4294967295");
      }
      return { words: [conv("conv", c.conv), ...range, String(c.limit)] };
    }
    case "SEND":
      return {
        words: [conv("to", c.to), shaped("key", c.key, isIdemKey, "1 to 64 of A-Z a-z 0-9 _ . - :")],
        payload: { field: "text", bytes: text("text", c.text) },
      };
    case "FILE-OFFER": {
      const problem = typeof c.name === "string" ? fileNameProblem(c.name, true) : "must be a string";
      if (problem) throw new EncodeError("BAD_FILE_NAME", "name", problem);
      return {
        words: [conv("to", c.to), num("size", c.size), hex64("sha256", c.sha256)],
        payload: { field: "name", bytes: utf8(c.name) },
      };
    }
    case "FILE-CHUNK":
      if (!(c.data instanceof Uint8Array)) throw new EncodeError("SYNTAX", "data", "must be a Uint8Array");
      return { words: [fileId(c.file), num("offset", c.offset)], payload: { field: "data", bytes: c.data } };
    case "FILE-STATUS":
    case "FILE-COMMIT":
    case "FILE-CANCEL":
      return { words: [fileId(c.file)] };
    case "FILES":
      return { words: [conv("conv", c.conv)] };
    case "FILE-GET":
      return { words: [fileId(c.file), num("offset", c.offset), num("length", c.length)] };
    case "TOKEN":
      return { words: [], payload: { field: "label", bytes: text("label", c.label) } };
    case "REVOKE":
      return { words: [num("token", c.token)] };
    case "PASSWORD": {
      const old = password("old", c.old);
      const fresh = password("new", c.new);
      const both = new Uint8Array(old.length + fresh.length);
      both.set(old);
      both.set(fresh, old.length);
      return { words: [String(old.length)], payload: { field: "new", bytes: both } };
    }
    case "DELETE-ACCOUNT":
      return { words: [], payload: { field: "password", bytes: password("password", c.password) } };
    case "READ": {
      const seq = c.seq;
      const ok = typeof seq === "bigint" ? seq >= 0n && seq <= U64_MAX : isWireNumber(seq);
      if (!ok) throw new EncodeError("SYNTAX", "seq", "must be an integer from 0 to 2^64-1");
      return { words: [conv("conv", c.conv), String(seq)] };
    }
    default: {
      const verb: unknown = (c as { verb?: unknown }).verb;
      throw new EncodeError("UNKNOWN_COMMAND", "verb", `unknown command ${JSON.stringify(verb)}`);
    }
  }
}

function name(field: string, s: string): string {
  // A missing argument is what the server calls SYNTAX; a bad one, BAD_NAME.
  if (typeof s !== "string") throw new EncodeError("SYNTAX", field, "missing");
  if (!isName(s)) {
    throw new EncodeError("BAD_NAME", field, `${JSON.stringify(s)} is not a name: a-z first, then up to 31 of a-z 0-9 _ . -`);
  }
  return s;
}

function conv(field: string, s: Conv): string {
  if (typeof s !== "string" || (s[0] !== "#" && s[0] !== "@")) {
    throw new EncodeError("SYNTAX", field, "a conversation is #group or @user");
  }
  name(field, s.slice(1));
  return s;
}

function rule(r: JoinRule): string {
  if (r !== "approval" && r !== "open" && r !== "invite") {
    throw new EncodeError("SYNTAX", "rule", "must be approval, open or invite");
  }
  return r;
}

function num(field: string, n: number | undefined): string {
  if (typeof n !== "number" || !isWireNumber(n)) {
    throw new EncodeError("SYNTAX", field, "must be a non-negative integer of at most 2^53-1");
  }
  return String(n);
}

function shaped(field: string, s: string, test: (s: string) => boolean, what: string): string {
  if (typeof s !== "string" || !test(s)) throw new EncodeError("SYNTAX", field, `must be ${what}`);
  return s;
}

function fileId(s: string): string {
  return shaped("file", s, isFileId, "1 to 64 of A-Z a-z 0-9 _ -");
}

function hex64(field: string, s: string): string {
  return shaped(field, s, isHex64, "64 lower-case hex digits");
}

function text(field: string, s: string): Uint8Array {
  const problem = typeof s === "string" ? textProblem(s, TEXT_MAX) : "must be a string";
  if (problem) throw new EncodeError("BAD_TEXT", field, problem);
  return utf8(s);
}

function password(field: string, p: Secret): Uint8Array {
  // A lone surrogate would be sent as U+FFFD: not the password that was typed.
  if (typeof p === "string" && hasLoneSurrogate(p)) {
    throw new EncodeError("SYNTAX", field, "holds a lone UTF-16 surrogate");
  }
  const bytes = typeof p === "string" ? utf8(p) : p;
  if (!(bytes instanceof Uint8Array) || bytes.length < 1 || bytes.length > PASSWORD_MAX) {
    throw new EncodeError("SYNTAX", field, `a password is 1 to ${PASSWORD_MAX} octets`);
  }
  return bytes;
}
