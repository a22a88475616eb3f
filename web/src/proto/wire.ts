/** Writing a frame's octets: a line of ASCII tokens, then a payload if it has one. */

const CRLF = [0x0d, 0x0a];

/** The octets of a line's text (ASCII by the grammar): one octet per character. */
function ascii(s: string, out: Uint8Array, at: number): number {
  for (let i = 0; i < s.length; i++) out[at + i] = s.charCodeAt(i);
  return at + s.length;
}

/** The length, CRLF included, of `line` once a payload of `payload` octets is declared on it. */
export function lineLength(line: string, payload: number | undefined): number {
  return line.length + (payload === undefined ? 0 : ` {${payload}}`.length) + 2;
}

/**
 * A whole frame: `line` CRLF, or with a payload `line SP "{" n "}"` CRLF, the payload
 * and CRLF (SPEC.md 2.1 and 2.2). `line` must be ASCII.
 */
export function frameBytes(line: string, payload?: Uint8Array): Uint8Array {
  const head = payload === undefined ? line : `${line} {${payload.length}}`;
  const out = new Uint8Array(head.length + 2 + (payload === undefined ? 0 : payload.length + 2));
  let at = ascii(head, out, 0);
  out.set(CRLF, at);
  at += 2;
  if (payload !== undefined) {
    out.set(payload, at);
    out.set(CRLF, at + payload.length);
  }
  return out;
}
