// The streaming decoder of server frames: any split of the stream gives the same
// frames, and the limits of SPEC.md 2.3 give their typed errors and keep the
// decoder's memory bounded.
import { describe, expect, it } from "vitest";

import { type Decoded, LINE_MAX, type ServerFrame } from "../../src/proto";
import { ServerFrameReader } from "../../src/proto/decode";
import { encodeServerFrame } from "../../src/proto/testing/serverEncode";
import { concat, specFrames } from "./spec";

const ascii = (s: string) => new TextEncoder().encode(s);

/** A stream of several frames: payloads (empty, binary, with CR and LF), events, an empty line. */
const stream = concat(
  ascii("c1 MSG #rust 41 1764072100000 bob {12}\r\ngood morning\r\n"),
  ascii("* PRESENCE bob online\r\n"),
  ascii("\r\n"),
  ascii("c2 CHUNK f7Qx2 0 {6}\r\n"),
  new Uint8Array([0x0d, 0x0a, 0x00, 0xff, 0x7b, 0x7d]),
  ascii("\r\n"),
  ascii("c2 CHUNK f7Qx2 6 {0}\r\n\r\n"),
  ascii("c2 OK FILE-GET f7Qx2 0 6\r\n"),
  ascii("* MSG @bob 9 1764072701000 bob {8}\r\nyou too?\r\n"),
  ascii("c3 ERR RATE_LIMITED retry=250 :rate limit exceeded\r\n"),
);

/** Feeds `bytes` in the given pieces and returns what came out. */
function feed(pieces: Uint8Array[], maxPayload = 4096): { out: Decoded<ServerFrame>[]; reader: ServerFrameReader } {
  const reader = new ServerFrameReader(maxPayload);
  const out = pieces.flatMap((p) => reader.push(p));
  return { out, reader };
}

/** The split of `bytes` at the given offsets. */
function split(bytes: Uint8Array, at: number[]): Uint8Array[] {
  const cuts = [0, ...at, bytes.length];
  return cuts.slice(1).map((end, i) => bytes.slice(cuts[i], end));
}

function codes(out: Decoded<ServerFrame>[]): string[] {
  return out.map((d) => (d.ok ? `${d.frame.kind}` : `${d.error.code}:${d.error.tag ?? "*"}`));
}

describe("the server-frame decoder", () => {
  const whole = feed([stream]).out;

  it("reads the test stream whole", () => {
    expect(codes(whole)).toEqual(["item", "event", "item", "item", "ok", "event", "err"]);
    const chunk = whole[2]!;
    expect(chunk.ok && chunk.frame.kind === "item" && chunk.frame.item.verb === "CHUNK" && [...chunk.frame.item.data]).toEqual([
      0x0d, 0x0a, 0x00, 0xff, 0x7b, 0x7d,
    ]);
    // Each frame re-encodes to its octets, whose lengths add up (the empty line aside).
    const total = whole.reduce((n, d) => n + (d.ok ? encodeServerFrame(d.frame).length : 0), 0);
    expect(total).toBe(stream.length - 2);
  });

  it("gives the same frames at every split point", () => {
    for (let i = 0; i <= stream.length; i++) {
      expect(feed(split(stream, [i])).out, `split at ${i}`).toEqual(whole);
    }
  });

  it("gives the same frames at every pair of split points", () => {
    for (let i = 0; i <= stream.length; i += 1) {
      for (let j = i; j <= stream.length; j += 3) {
        expect(feed(split(stream, [i, j])).out).toEqual(whole);
      }
    }
  });

  it("gives the same frames one octet at a time, for all of SPEC.md's server frames", () => {
    const spec = concat(...specFrames().filter((f) => f.side === "S").map((f) => f.bytes));
    const all = feed([spec], 1 << 20).out;
    expect(all.length).toBeGreaterThan(150);
    expect(all.every((d) => d.ok)).toBe(true);
    const reader = new ServerFrameReader(1 << 20);
    const bytewise: Decoded<ServerFrame>[] = [];
    for (let i = 0; i < spec.length; i++) bytewise.push(...reader.push(spec.subarray(i, i + 1)));
    expect(bytewise).toEqual(all);
  });

  it("does not keep the caller's buffer: a reused buffer does not change decoded payloads", () => {
    const reader = new ServerFrameReader();
    const buf = ascii("c1 CHUNK f 0 {3}\r\nabc\r\n");
    const [d] = reader.push(buf);
    buf.fill(0x21);
    expect(d!.ok && d!.frame.kind === "item" && d!.frame.item.verb === "CHUNK" && new TextDecoder().decode(d!.frame.item.data)).toBe("abc");
  });
});

describe("the limits", () => {
  it("a line of exactly LINE_MAX octets is a line; one more is LINE_TOO_LONG, said once", () => {
    const fits = `c7 ${"x".repeat(LINE_MAX - 5)}\r\n`;
    expect(fits.length).toBe(LINE_MAX);
    expect(codes(feed([ascii(fits)]).out)).toEqual(["UNKNOWN_COMMAND:c7"]);

    const long = ascii(`c7 ${"x".repeat(5000)}\r\nc8 OK PING\r\n`);
    for (const at of [0, 1, 500, LINE_MAX - 1, LINE_MAX, LINE_MAX + 1, 4000]) {
      const { out } = feed(split(long, [at]));
      expect(codes(out), `split at ${at}`).toEqual(["LINE_TOO_LONG:c7", "ok"]);
    }
  });

  it("the line limit is a parameter", () => {
    const reader = new ServerFrameReader(4096, 16);
    expect(codes(reader.push(ascii("c1 OK PING\r\nc2 OK HISTORY #r 1 1\r\nc3 OK PING\r\n")))).toEqual([
      "ok",
      "LINE_TOO_LONG:c2",
      "ok",
    ]);
  });

  it("LINE_TOO_LONG comes as soon as LINE_MAX octets arrive, and the decoder holds no more", () => {
    const reader = new ServerFrameReader();
    expect(reader.push(ascii("c9 ".padEnd(LINE_MAX - 1, "y")))).toEqual([]);
    expect(reader.buffered).toBe(LINE_MAX - 1);
    const [e] = reader.push(ascii("y"));
    expect(!e!.ok && e!.error.code).toBe("LINE_TOO_LONG");
    // The rest of the line is dropped as it comes, not held.
    for (let i = 0; i < 100; i++) expect(reader.push(ascii("z".repeat(1000)))).toEqual([]);
    expect(reader.buffered).toBe(0);
    expect(codes(reader.push(ascii("zz\r\nc10 OK PING\r\n")))).toEqual(["ok"]);
  });

  it("a payload over the limit is PAYLOAD_TOO_LARGE from its marker, skipped unbuffered, and the stream goes on", () => {
    const reader = new ServerFrameReader(100);
    const [e] = reader.push(ascii("c4 CHUNK f 0 {100000}\r\n"));
    expect(e).toMatchObject({ ok: false, error: { code: "PAYLOAD_TOO_LARGE", tag: "c4" } });
    for (let i = 0; i < 100; i++) {
      expect(reader.push(new Uint8Array(1000).fill(0x0a))).toEqual([]);
      expect(reader.buffered).toBe(0);
    }
    expect(codes(reader.push(ascii("\r\nc5 OK PING\r\n")))).toEqual(["ok"]);
    // At the limit, it is read.
    expect(codes(feed([ascii(`c6 CHUNK f 0 {100}\r\n${"q".repeat(100)}\r\n`)], 100).out)).toEqual(["item"]);
  });

  it("the limit can change between frames, as after HELLO", () => {
    const reader = new ServerFrameReader(4);
    const bytes = ascii("c1 CHUNK f 0 {5}\r\nabcde\r\nc2 CHUNK f 0 {5}\r\nabcde\r\n");
    const out: Decoded<ServerFrame>[] = [];
    for (const d of reader.read(bytes)) {
      out.push(d);
      reader.maxPayload = 5;
    }
    expect(codes(out)).toEqual(["PAYLOAD_TOO_LARGE:c1", "item"]);
  });

  it("a payload not followed by CRLF is fatal: BAD_PAYLOAD_END, then nothing", () => {
    for (const bad of ["c1 CHUNK f 0 {2}\r\nabXY", "c1 CHUNK f 0 {2}\r\nab\rX", "c1 CHUNK f 0 {9999}\r\n"]) {
      const reader = new ServerFrameReader(10);
      const out = reader.push(concat(ascii(bad), new Uint8Array(9999).fill(0x61), ascii("XX\r\nc2 OK PING\r\n")));
      expect(codes(out).at(-1), bad).toBe("BAD_PAYLOAD_END:*");
      expect(reader.failed).toBe(true);
      expect(reader.push(ascii("c3 OK PING\r\n"))).toEqual([]);
    }
  });

  it("bad line ends and markers give their codes and the stream resynchronises", () => {
    const out = feed([
      ascii("c1 OK PING\n"), // bare LF
      ascii("c2 OK\rPING\r\n"), // CR inside
      ascii("c3 CHUNK f 0 {3\r\n"), // malformed marker
      ascii("c4 CHUNK f 0 {03}\r\n"), // leading zero
      ascii("c5 CHUNK f 0 {3}\nabc\r\n"), // bare LF, its payload skipped
      ascii("c6 OK\rPING {2}\r\nxy\r\n"), // CR inside, its payload skipped
      ascii("\r\n\r\n"), // empty lines
      ascii("c7 OK PING\r\n"),
    ]).out;
    expect(codes(out)).toEqual([
      "BAD_LINE_END:c1",
      "BAD_LINE_END:c2",
      "SYNTAX:c3",
      "SYNTAX:c4",
      "BAD_LINE_END:c5",
      "BAD_LINE_END:c6",
      "ok",
    ]);
  });

  it("frames that break the grammar fail alone, with their tag where it can be read", () => {
    const out = feed([
      ascii("c1 OK  PING\r\n"), // two spaces
      ascii(" c2 OK PING\r\n"), // leading space: no tag
      ascii("c3 ERR NO_SUCH_THING :later edition\r\n"), // unknown code
      ascii("c4 WIDGET 1\r\n"), // unknown item
      ascii("* SPARKLE #rust\r\n"), // unknown event
      ascii("c5 OK SEND #rust 9007199254740992 5\r\n"), // past 2^53-1
      ascii("c6 MSG #rust 1 2 bob {2}\r\n\u0007!\r\n"), // a control character
      ascii("c7 OK PING\r\n"),
    ]).out;
    expect(codes(out)).toEqual([
      "SYNTAX:c1",
      "BAD_TAG:*",
      "SYNTAX:c3",
      "UNKNOWN_COMMAND:c4",
      "UNKNOWN_COMMAND:*",
      "SYNTAX:c5",
      "BAD_TEXT:c6",
      "ok",
    ]);
  });

  it("text keeps exactly its octets: a leading BOM, astral characters", () => {
    const text = "\ufeff🙂 नमस्ते\t!";
    const bytes = ascii(`* MSG #rust 1 2 bob {${ascii(text).length}}\r\n${text}\r\n`);
    const [d] = feed([bytes]).out;
    expect(d!.ok && d!.frame.kind === "event" && d!.frame.event.verb === "MSG" && d!.frame.event.text).toBe(text);
    expect(encodeServerFrame((d as { frame: ServerFrame }).frame)).toEqual(bytes);
    // Not UTF-8 (an overlong slash, an encoded surrogate): BAD_TEXT.
    for (const bad of [[0xc0, 0xaf], [0xed, 0xa0, 0x80]]) {
      const frame = concat(ascii(`* MSG #rust 1 2 bob {${bad.length}}\r\n`), new Uint8Array(bad), ascii("\r\n"));
      expect(codes(feed([frame]).out)).toEqual(["BAD_TEXT:*"]);
    }
  });

  it("HELLO replies: unknown keys ignored, later keys optional, first-edition keys required", () => {
    const first = "line=1024 payload=1048576 message=16384 reason=1024 file=4294967296 chunk=1048576 quota=17179869184 uploads=4 partial=86400 groups=256 members=10000 pending=1000 invites=1000 rate=1000 burst=10000 history=0 page=1000 inflight=1024 sessions=16 idle=300 expiry=604800 keys=604800 queue=8388608";
    const [ok] = feed([ascii(`c1 OK HELLO 1 old/1 ${first} shiny-new=5\r\n`)]).out;
    expect(ok).toMatchObject({ ok: true, frame: { reply: { features: [], limits: { queue: 8388608, password: 1, login: 0 } } } });
    const lacking = first.replace(" queue=8388608", "");
    expect(codes(feed([ascii(`c1 OK HELLO 1 old/1 ${lacking}\r\n`)]).out)).toEqual(["SYNTAX:c1"]);
    expect(codes(feed([ascii(`c1 OK HELLO 1 old/1 ${first} idle=5\r\n`)]).out)).toEqual(["SYNTAX:c1"]);
    expect(codes(feed([ascii(`c1 OK HELLO 1 old/1 features=a features=b ${first}\r\n`)]).out)).toEqual(["SYNTAX:c1"]);
    // A later key's value is at most 14 digits; a first-edition key's may be any number.
    expect(codes(feed([ascii(`c1 OK HELLO 1 old/1 ${first} login=100000000000000\r\n`)]).out)).toEqual(["SYNTAX:c1"]);
    const [big] = feed([ascii(`c1 OK HELLO 1 old/1 ${first.replace("quota=17179869184", "quota=18446744073709551615")}\r\n`)]).out;
    expect(big).toMatchObject({ ok: true, frame: { reply: { limits: { quota: Number.MAX_SAFE_INTEGER } } } });
  });
});
