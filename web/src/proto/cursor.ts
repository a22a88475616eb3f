/**
 * Reading the tokens of one line: the shared machinery of the server-frame decoder
 * and the test-only client-frame decoder. Every reader names the ABNF rule it reads
 * and throws a {@link DecodeError} with the code SPEC.md gives a bad value of it.
 */

import { DecodeError, type ErrorCode } from "./errors";
import {
  fileNameProblem,
  fromUtf8,
  isAddress,
  isFileId,
  isHex64,
  isIdemKey,
  isName,
  isSoftware,
  parseU64,
  textProblem,
} from "./syntax";
import type { Conv, GroupConv } from "./types";
import { TEXT_MAX } from "./limits";

/** Throws the error for a frame that does not match the grammar. */
export function fail(code: ErrorCode, detail: string): never {
  throw new DecodeError(code, detail);
}

/**
 * A position in a line's content (CRLF and payload marker already removed). Tokens
 * are separated by exactly one space: an empty token (two spaces, or a space at the
 * end) is a syntax error wherever it stands.
 */
export class Cursor {
  private at = 0;

  /** @param line the line's content, one character per octet. */
  constructor(private readonly line: string) {}

  /** The first token of the line (the tag, or `*`), up to the first space or the end. */
  first(): string {
    const space = this.line.indexOf(" ");
    const end = space === -1 ? this.line.length : space;
    this.at = end;
    return this.line.slice(0, end);
  }

  /** Whether nothing is left. */
  get done(): boolean {
    return this.at >= this.line.length;
  }

  /** `SP token`: the next argument; a missing one is `SYNTAX`. */
  arg(): string {
    if (this.done) fail("SYNTAX", "missing arguments");
    if (this.line[this.at] !== " ") fail("SYNTAX", "expected a space");
    const start = this.at + 1;
    const space = this.line.indexOf(" ", start);
    const end = space === -1 ? this.line.length : space;
    if (end === start) fail("SYNTAX", "expected an argument");
    this.at = end;
    return this.line.slice(start, end);
  }

  /** The next argument if there is one. */
  optArg(): string | undefined {
    return this.done ? undefined : this.arg();
  }

  /** `SP` and everything after it to the end of the line (a note holds spaces). */
  rest(): string {
    if (this.done) fail("SYNTAX", "missing arguments");
    if (this.line[this.at] !== " ") fail("SYNTAX", "expected a space");
    const rest = this.line.slice(this.at + 1);
    this.at = this.line.length;
    return rest;
  }

  /** Requires the end of the line. */
  end(): void {
    if (!this.done) fail("SYNTAX", "unexpected extra arguments");
  }

  /** `user-name` or `group-name`. */
  name(): string {
    const s = this.arg();
    if (!isName(s)) fail("BAD_NAME", `invalid name ${JSON.stringify(s)}`);
    return s;
  }

  /** `conv = "#" group-name / "@" user-name` */
  conv(): Conv {
    const s = this.arg();
    if (s[0] !== "#" && s[0] !== "@") fail("SYNTAX", "expected a conversation: #group or @user");
    if (!isName(s.slice(1))) fail("BAD_NAME", `invalid name in ${JSON.stringify(s)}`);
    return s as Conv;
  }

  /** `group-conv = "#" group-name` */
  groupConv(): GroupConv {
    const c = this.conv();
    if (c[0] !== "#") fail("SYNTAX", "expected a group conversation: #group");
    return c as GroupConv;
  }

  /** `number`, as a `number`: one past `Number.MAX_SAFE_INTEGER` cannot be held exactly. */
  num(): number {
    const n = this.big();
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) fail("SYNTAX", "number too large for this client");
    return Number(n);
  }

  /** `number`, as a `bigint` (all of 0 to 2^64-1). */
  big(): bigint {
    const s = this.arg();
    const n = parseU64(s);
    if (n === undefined) fail("SYNTAX", `expected a number, got ${JSON.stringify(s)}`);
    return n;
  }

  /** One of a fixed set of keywords. */
  keyword<K extends string>(words: readonly K[]): K {
    const s = this.arg();
    if (!(words as readonly string[]).includes(s)) fail("SYNTAX", `unknown keyword ${JSON.stringify(s)}`);
    return s as K;
  }

  /** A token of a fixed shape, refused with `SYNTAX`. */
  shaped(what: string, test: (s: string) => boolean): string {
    const s = this.arg();
    if (!test(s)) fail("SYNTAX", `invalid ${what} ${JSON.stringify(s)}`);
    return s;
  }

  /** `file-id` */
  fileId(): string {
    return this.shaped("file id", isFileId);
  }

  /** `idem-key` */
  idemKey(): string {
    return this.shaped("idempotency key", isIdemKey);
  }

  /** `software` */
  software(): string {
    return this.shaped("software", isSoftware);
  }

  /** `sha256` or `secret`: 64 lower-case hex digits. */
  hex64(): string {
    return this.shaped("hex digest", isHex64);
  }

  /** `address` */
  address(): string {
    return this.shaped("address", isAddress);
  }
}

/** Requires a payload. */
export function required(payload: Uint8Array | undefined): Uint8Array {
  if (payload === undefined) fail("SYNTAX", "this frame needs a payload");
  return payload;
}

/** Requires that there is no payload. */
export function none(payload: Uint8Array | undefined): void {
  if (payload !== undefined) fail("SYNTAX", "this frame takes no payload");
}

/** A payload as `text` of at most 65,536 octets; `BAD_TEXT` otherwise. */
export function payloadText(payload: Uint8Array): string {
  const s = fromUtf8(payload);
  if (s === undefined) fail("BAD_TEXT", "text is not UTF-8");
  const problem = textProblem(s, TEXT_MAX);
  if (problem) fail("BAD_TEXT", `text ${problem}`);
  return s;
}

/** A payload as a `file-name` (`offer`: an `offer-name`); `BAD_FILE_NAME` otherwise. */
export function payloadFileName(payload: Uint8Array, offer: boolean): string {
  const s = fromUtf8(payload);
  if (s === undefined) fail("BAD_FILE_NAME", "file name is not UTF-8");
  const problem = fileNameProblem(s, offer);
  if (problem) fail("BAD_FILE_NAME", `file name ${problem}`);
  return s;
}
