/**
 * The framing of SPEC.md section 2: finding where each frame ends in a byte stream
 * that arrives in pieces of any size, under the line and payload limits, and
 * resynchronising after an error as section 2.3's table says. What a frame means is
 * left to a parser; this module is shared by every decoder, whichever side it reads.
 */

import { DecodeError } from "./errors";
import { LINE_MAX } from "./limits";
import { isTag, latin1, parseU64 } from "./syntax";

const CR = 0x0d;
const LF = 0x0a;

/**
 * Parses one whole frame: its line (without payload marker and CRLF) and its payload
 * if the line declared one. Throws a {@link DecodeError} (its tag is filled in by the
 * caller) for a frame that does not match the grammar.
 */
export type FrameParser<F> = (line: Uint8Array, payload: Uint8Array | undefined) => F;

/** A frame, or why the next frame could not be read. */
export type Decoded<F> =
  | {
      readonly ok: true;
      /** The frame. */
      readonly frame: F;
      /** Its length on the wire in octets, line, payload and both CRLFs included. */
      readonly size: number;
    }
  | { readonly ok: false; readonly error: DecodeError };

type State =
  /** Reading a line; `lineLen` octets of it are in `lineBuf`. */
  | { readonly k: "line" }
  /** Reading the payload a line declared, then its CRLF, into `buf`. */
  | { readonly k: "payload"; readonly line: Uint8Array; readonly buf: Uint8Array; got: number; readonly size: number }
  /** Dropping the rest of a line that was too long, up to and including its LF. */
  | { readonly k: "discard" }
  /** Dropping a refused payload, then its CRLF. */
  | { readonly k: "skip"; remaining: number }
  /** Expecting the CRLF after a dropped payload; `got` octets of it have come. */
  | { readonly k: "skipEnd"; got: number }
  /** The stream is out of step for good. */
  | { readonly k: "failed" };

/**
 * An incremental frame decoder for one direction of a connection.
 *
 * {@link push} (or {@link read}) takes the next octets, split anywhere, and returns
 * every frame they complete, in order, each a frame or the {@link DecodeError} that replaced it. After
 * a non-fatal error it has already resynchronised; after a fatal one it returns
 * nothing more. Between calls it holds at most one line (`maxLine` octets), or
 * one line and one payload of at most the payload limit: a payload over the limit is
 * refused from its marker and skipped without being buffered.
 */
export class FrameReader<F> {
  private readonly lineBuf: Uint8Array;
  private lineLen = 0;
  private state: State = { k: "line" };

  /**
   * @param parse turns a whole frame into a value.
   * @param maxPayload the longest payload accepted, in octets.
   * @param maxLine the longest line, CRLF included ({@link LINE_MAX}, which the
   *   protocol fixes: HELLO's `line` always says 1024).
   */
  constructor(
    private readonly parse: FrameParser<F>,
    public maxPayload: number,
    readonly maxLine: number = LINE_MAX,
  ) {
    this.lineBuf = new Uint8Array(maxLine);
  }

  /** Whether a fatal error has made the stream unusable. */
  get failed(): boolean {
    return this.state.k === "failed";
  }

  /** How many octets are held, waiting for the rest of their frame. */
  get buffered(): number {
    return this.state.k === "payload" ? this.state.line.length + this.state.got : this.lineLen;
  }

  /** Takes the next octets of the stream; returns the frames they complete. */
  push(chunk: Uint8Array): Decoded<F>[] {
    return [...this.read(chunk)];
  }

  /**
   * As {@link push}, lazily: each frame is decoded when the caller asks for it, so a
   * change to `maxPayload` made after one frame (the HELLO reply's) applies to the
   * frames after it in the same chunk. A caller that stops early drops the rest of
   * the chunk.
   */
  *read(chunk: Uint8Array): Generator<Decoded<F>, void, undefined> {
    let off = 0;
    while (off < chunk.length) {
      const s = this.state;
      switch (s.k) {
        case "failed":
          return;
        case "line": {
          const stop = Math.min(chunk.length, off + this.maxLine - this.lineLen);
          const lf = chunk.indexOf(LF, off);
          if (lf === -1 || lf >= stop) {
            this.lineBuf.set(chunk.subarray(off, stop), this.lineLen);
            this.lineLen += stop - off;
            off = stop;
            if (this.lineLen === this.maxLine) {
              // Said once, as soon as the limit is reached; the rest is dropped unread.
              const tag = sniffTag(this.lineBuf);
              this.lineLen = 0;
              this.state = { k: "discard" };
              yield failure("LINE_TOO_LONG", `line longer than ${this.maxLine} octets`, tag);
            }
            break;
          }
          let line: Uint8Array;
          if (this.lineLen === 0) {
            line = chunk.subarray(off, lf + 1);
          } else {
            this.lineBuf.set(chunk.subarray(off, lf + 1), this.lineLen);
            line = this.lineBuf.subarray(0, this.lineLen + lf + 1 - off);
          }
          off = lf + 1;
          const decoded = this.onLine(line);
          this.lineLen = 0;
          if (decoded) yield decoded;
          break;
        }
        case "payload": {
          const n = Math.min(s.buf.length - s.got, chunk.length - off);
          s.buf.set(chunk.subarray(off, off + n), s.got);
          s.got += n;
          off += n;
          if (s.got === s.buf.length) yield this.onPayload(s.line, s.buf, s.size);
          break;
        }
        case "discard": {
          const lf = chunk.indexOf(LF, off);
          if (lf === -1) {
            off = chunk.length;
          } else {
            off = lf + 1;
            this.state = { k: "line" };
          }
          break;
        }
        case "skip": {
          const n = Math.min(s.remaining, chunk.length - off);
          off += n;
          s.remaining -= n;
          if (s.remaining === 0) this.state = { k: "skipEnd", got: 0 };
          break;
        }
        case "skipEnd": {
          const expected = s.got === 0 ? CR : LF;
          if (chunk[off] !== expected) {
            yield this.fail();
            return;
          }
          off += 1;
          s.got += 1;
          if (s.got === 2) this.state = { k: "line" };
          break;
        }
      }
    }
  }

  /** A whole line, LF included, has arrived. */
  private onLine(line: Uint8Array): Decoded<F> | undefined {
    const n = line.length;
    if (n < 2 || line[n - 2] !== CR) {
      const content = line.subarray(0, n - 1);
      // As for any bad line: a payload it declares is dropped too, to stay in step.
      const marker = splitMarker(content);
      if (marker?.payload !== undefined) this.skip(marker.payload);
      return failure("BAD_LINE_END", "line ended in a bare LF", sniffTag(content));
    }
    const content = line.subarray(0, n - 2);
    // An empty line is ignored, so that a person typing can press Enter safely.
    if (content.length === 0) return undefined;
    const marker = splitMarker(content);
    if (marker === undefined) {
      return failure("SYNTAX", "malformed payload marker", sniffTag(content));
    }
    const { contentLen, payload } = marker;
    if (payload !== undefined && payload > this.maxPayload) {
      this.skip(payload);
      return failure(
        "PAYLOAD_TOO_LARGE",
        `payload of ${payload} octets over the limit of ${this.maxPayload}`,
        sniffTag(content),
      );
    }
    // Checked after the payload limit, so that an oversized payload is reported as such.
    if (content.includes(CR)) {
      if (payload !== undefined) this.skip(payload);
      return failure("BAD_LINE_END", "CR inside a line", sniffTag(content));
    }
    if (payload === undefined) return this.run(content.subarray(0, contentLen), undefined, n);
    this.state = {
      k: "payload",
      // The line may live in the caller's chunk or in `lineBuf`: it is kept by copy.
      line: content.slice(0, contentLen),
      buf: new Uint8Array(payload + 2),
      got: 0,
      size: n + payload + 2,
    };
    return undefined;
  }

  /** A declared payload and the two octets after it have arrived. */
  private onPayload(line: Uint8Array, buf: Uint8Array, size: number): Decoded<F> {
    const len = buf.length - 2;
    if (buf[len] !== CR || buf[len + 1] !== LF) return this.fail();
    this.state = { k: "line" };
    return this.run(line, buf.subarray(0, len), size);
  }

  private run(line: Uint8Array, payload: Uint8Array | undefined, size: number): Decoded<F> {
    this.state = { k: "line" };
    try {
      return { ok: true, frame: this.parse(line, payload), size };
    } catch (e) {
      if (e instanceof DecodeError) return { ok: false, error: e };
      throw e;
    }
  }

  private skip(octets: number): void {
    this.state = octets === 0 ? { k: "skipEnd", got: 0 } : { k: "skip", remaining: octets };
  }

  private fail(): Decoded<F> {
    this.state = { k: "failed" };
    this.lineLen = 0;
    return failure("BAD_PAYLOAD_END", "payload not followed by CRLF", undefined);
  }
}

function failure(code: DecodeError["code"], detail: string, tag: string | undefined): Decoded<never> {
  return { ok: false, error: new DecodeError(code, detail, tag) };
}

/**
 * Splits a trailing ` {n}` off a line's content: the content's length without it,
 * and the declared payload length. `undefined` for a line that ends in `}` without a
 * well-formed marker (a `SYNTAX` error).
 */
function splitMarker(content: Uint8Array): { contentLen: number; payload?: number } | undefined {
  const n = content.length;
  if (n === 0 || content[n - 1] !== 0x7d /* } */) return { contentLen: n };
  let open = n - 1;
  while (open > 0 && content[open - 1]! >= 0x30 && content[open - 1]! <= 0x39) open--;
  // `open` is the first digit; `{` and a space must stand before it.
  if (open < 2 || content[open - 1] !== 0x7b /* { */ || content[open - 2] !== 0x20) return undefined;
  const value = parseU64(latin1(content.subarray(open, n - 1)));
  if (value === undefined) return undefined;
  // Past 2^53 a length loses precision; skipping "about 2^64" octets never ends
  // either way, and no payload that long can be accepted.
  return { contentLen: open - 2, payload: Number(value) };
}

/** The tag at the start of a line, if it has a valid one (for error reports). */
function sniffTag(line: Uint8Array): string | undefined {
  const space = line.indexOf(0x20);
  const tag = latin1(line.subarray(0, space === -1 ? Math.min(line.length, 33) : space));
  return isTag(tag) ? tag : undefined;
}
