// Reads SPEC.md's example transcripts: every fenced block's `C:` and `S:` lines, a
// line after one that declares a payload being that payload (SPEC.md 1.1).
import { readFileSync } from "node:fs";

/** SPEC.md, read from the repository root. */
export const SPEC = readFileSync(new URL("../../../SPEC.md", import.meta.url), "utf8");

/** One frame of a transcript, as it goes on the wire. */
export interface SpecFrame {
  /** `C` for the client's, `S` for the server's. */
  readonly side: "C" | "S";
  /** SPEC.md's line number of its first line. */
  readonly at: number;
  /** The frame's text (line, and payload after a newline), for messages. */
  readonly text: string;
  /** Its octets: line, CRLF, and payload and CRLF if it has one. */
  readonly bytes: Uint8Array;
  /** The block (fenced code) it stands in, by its first line number. */
  readonly block: number;
}

const MARKER = / \{(\d+)\}$/;
const utf8 = new TextEncoder();

/** Every frame of every transcript, in document order. */
export function specFrames(spec: string = SPEC): SpecFrame[] {
  const frames: SpecFrame[] = [];
  const lines = spec.split("\n");
  let block: number | undefined;
  // The frame of each side whose payload is the next line of that side.
  const awaiting: { C?: { at: number; line: string }; S?: { at: number; line: string } } = {};
  lines.forEach((line, i) => {
    if (line.startsWith("```")) {
      if (block !== undefined && (awaiting.C || awaiting.S)) {
        throw new Error(`SPEC.md line ${i + 1}: a block ends before a declared payload`);
      }
      block = block === undefined ? i + 1 : undefined;
      return;
    }
    if (block === undefined) return;
    const side = line.startsWith("C: ") ? "C" : line.startsWith("S: ") ? "S" : undefined;
    if (side === undefined) return;
    const content = line.slice(3);
    const head = awaiting[side];
    if (head) {
      awaiting[side] = undefined;
      frames.push({
        side,
        at: head.at,
        block,
        text: `${head.line}\n${content}`,
        bytes: concat(utf8.encode(`${head.line}\r\n`), utf8.encode(`${content}\r\n`)),
      });
      return;
    }
    if (MARKER.test(content)) {
      awaiting[side] = { at: i + 1, line: content };
      return;
    }
    frames.push({ side, at: i + 1, block, text: content, bytes: utf8.encode(`${content}\r\n`) });
  });
  if (block !== undefined) throw new Error("SPEC.md has an unclosed code fence");
  return frames;
}

/** The `C:` and `S:` lines of SPEC.md inside fenced blocks, counted without parsing them. */
export function specLineCount(side: "C" | "S", spec: string = SPEC): number {
  let inBlock = false;
  let n = 0;
  for (const line of spec.split("\n")) {
    if (line.startsWith("```")) inBlock = !inBlock;
    else if (inBlock && line.startsWith(`${side}: `)) n++;
  }
  return n;
}

/** The octets of several arrays, one after another. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
