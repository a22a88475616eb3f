// SPEC.md's transcripts against the codec: every client frame decodes (with the
// test-only client decoder) and re-encodes with the real encoder to the very same
// octets, and every server frame decodes with the real decoder and re-encodes (with
// the test-only server encoder) to the very same octets.
import { describe, expect, it } from "vitest";

import { type Decoded, PAYLOAD_CEILING, type Request, type ServerFrame, encodeRequest } from "../../src/proto";
import { ServerFrameReader } from "../../src/proto/decode";
import { CLIENT_VERBS } from "../../src/proto/types";
import { ClientFrameReader } from "../../src/proto/testing/clientDecode";
import { encodeServerFrame } from "../../src/proto/testing/serverEncode";
import { type SpecFrame, concat, specFrames, specLineCount } from "./spec";

const frames = specFrames();
const client = frames.filter((f) => f.side === "C");
const server = frames.filter((f) => f.side === "S");
const text = new TextDecoder();

/** Decodes a side's frames as one stream and pairs each frame with what it decoded to. */
function decodeStream<F>(side: SpecFrame[], reader: { push(b: Uint8Array): Decoded<F>[] }) {
  const decoded = reader.push(concat(...side.map((f) => f.bytes)));
  expect(decoded.length, "one decoded frame per frame of the transcripts").toBe(side.length);
  return side.map((frame, i) => ({ frame, decoded: decoded[i]! }));
}

/** The lines of SPEC.md that a side's frames take up: one, or two with a payload. */
function linesOf(side: SpecFrame[]): number {
  return side.reduce((n, f) => n + (f.text.includes("\n") ? 2 : 1), 0);
}

describe("SPEC.md transcripts", () => {
  it("are found: every C: and S: line belongs to a frame", () => {
    expect(linesOf(client)).toBe(specLineCount("C"));
    expect(linesOf(server)).toBe(specLineCount("S"));
    // SPEC.md holds more than a hundred of each; finding none must fail.
    expect(specLineCount("C")).toBeGreaterThanOrEqual(100);
    expect(specLineCount("S")).toBeGreaterThanOrEqual(150);
  });

  it("client frames decode and re-encode byte for byte", () => {
    let reencoded = 0;
    let refused = 0;
    for (const { frame, decoded } of decodeStream<Request>(client, new ClientFrameReader())) {
      if (!decoded.ok) {
        // The spec shows bad requests next to their refusal: the decoder must find the
        // very error code the transcript answers with.
        const { tag, code } = decoded.error;
        expect(tag, `line ${frame.at}: a bad request with a readable tag`).toBeDefined();
        const answer = server.find((s) => s.block === frame.block && s.text.startsWith(`${tag} ERR ${code}`));
        expect(answer, `line ${frame.at}: ${frame.text} fails with ${code}, which the transcript does not answer`).toBeDefined();
        refused++;
        continue;
      }
      const bytes = encodeRequest(decoded.frame, { maxPayload: PAYLOAD_CEILING });
      expect(text.decode(bytes), `SPEC.md line ${frame.at}`).toBe(text.decode(frame.bytes));
      expect(bytes).toEqual(frame.bytes);
      reencoded++;
    }
    expect(reencoded + refused).toBe(client.length);
    expect(reencoded + refused).toBeGreaterThanOrEqual(specLineCount("C") - (linesOf(client) - client.length));
    // JOIN ru$t (BAD_NAME), FILE-OFFER .bashrc (BAD_FILE_NAME), FROB (UNKNOWN_COMMAND),
    // KICK rust (SYNTAX).
    expect(refused).toBe(4);
  });

  it("server frames decode and re-encode byte for byte", () => {
    let checked = 0;
    for (const { frame, decoded } of decodeStream<ServerFrame>(server, new ServerFrameReader(PAYLOAD_CEILING))) {
      if (!decoded.ok) throw new Error(`SPEC.md line ${frame.at}: ${frame.text}: ${decoded.error.code} ${decoded.error.message}`);
      expect(decoded.size, `line ${frame.at}: size`).toBe(frame.bytes.length);
      const bytes = encodeServerFrame(decoded.frame);
      expect(text.decode(bytes), `SPEC.md line ${frame.at}`).toBe(text.decode(frame.bytes));
      expect(bytes).toEqual(frame.bytes);
      checked++;
    }
    expect(checked).toBe(server.length);
    expect(checked).toBeGreaterThanOrEqual(specLineCount("S") - (linesOf(server) - server.length));
  });

  it("show every command, reply, item and event", () => {
    const requests = new ClientFrameReader().push(concat(...client.map((f) => f.bytes)));
    const verbs = new Set(requests.flatMap((d) => (d.ok ? [d.frame.command.verb] : [])));
    expect([...CLIENT_VERBS].filter((v) => !verbs.has(v))).toEqual([]);

    const decoded = new ServerFrameReader(PAYLOAD_CEILING).push(concat(...server.map((f) => f.bytes)));
    const seen = new Set<string>();
    for (const d of decoded) {
      if (!d.ok) continue;
      const f = d.frame;
      if (f.kind === "event") seen.add(`event ${f.event.verb}`);
      if (f.kind === "item") seen.add(`item ${f.item.verb}`);
      if (f.kind === "ok") seen.add(`ok ${f.reply.verb}`);
      if (f.kind === "err") seen.add("err");
    }
    const events = ["MSG", "FILE", "JOINED", "LEFT", "KICKED", "BANNED", "ROLE", "OFFERED", "OWNER", "RULE",
      "REQUESTED", "INVITED", "APPROVED", "REJECTED", "DELETED", "PRESENCE", "READ", "ERR", "BYE"];
    const items = ["MSG", "FILE", "JOINED", "REQUEST", "GROUP", "CONV", "MEMBER", "ONLINE", "HAVE", "CHUNK", "TOKEN", "BAN"];
    const missing = [
      ...events.map((v) => `event ${v}`),
      ...items.map((v) => `item ${v}`),
      ...CLIENT_VERBS.map((v) => `ok ${v}`),
      "err",
    ].filter((k) => !seen.has(k));
    // SPEC.md shows DECLINE only refused (6.3); every other command also succeeds somewhere.
    expect(missing).toEqual(["ok DECLINE"]);
  });
});
