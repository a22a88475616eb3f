/**
 * The token alphabets of SPEC.md section 2.4 and the rules for payload text, as
 * predicates shared by the encoder (which refuses what the server would refuse) and
 * the decoders (which refuse what the grammar does not allow).
 */

const NAME = /^[a-z][a-z0-9_.-]{0,31}$/;
const TAG = /^[A-Za-z0-9_.-]{1,32}$/;
const IDEM_KEY = /^[A-Za-z0-9_.:-]{1,64}$/;
const FILE_ID = /^[A-Za-z0-9_-]{1,64}$/;
const SOFTWARE = /^[A-Za-z0-9_./+-]{1,64}$/;
const FEATURE = /^[a-z0-9-]{1,24}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const ADDRESS = /^[0-9a-f.:]{1,45}$/;
const NUMBER = /^(?:0|[1-9][0-9]{0,19})$/;
const ERROR_CODE = /^[A-Z_]{1,32}$/;
const NOTE = /^[\x20-\x7a|~]{1,256}$/;

/** `name = LOWER *31(LOWER / DIGIT / "_" / "." / "-")`: user and group names. */
export const isName = (s: string): boolean => NAME.test(s);
/** `tag = 1*32(ALPHA / DIGIT / "_" / "." / "-")` */
export const isTag = (s: string): boolean => TAG.test(s);
/** `idem-key = 1*64(ALPHA / DIGIT / "_" / "." / "-" / ":")` */
export const isIdemKey = (s: string): boolean => IDEM_KEY.test(s);
/** `file-id = 1*64(ALPHA / DIGIT / "_" / "-")` */
export const isFileId = (s: string): boolean => FILE_ID.test(s);
/** `software = 1*64(ALPHA / DIGIT / "_" / "." / "-" / "/" / "+")` */
export const isSoftware = (s: string): boolean => SOFTWARE.test(s);
/** `feature = 1*24(LOWER / DIGIT / "-")`, also the shape of any HELLO key. */
export const isFeature = (s: string): boolean => FEATURE.test(s);
/** `sha256` and `secret`: 64 lower-case hex digits. */
export const isHex64 = (s: string): boolean => HEX64.test(s);
/** `address = 1*45(DIGIT / %x61-66 / "." / ":")` */
export const isAddress = (s: string): boolean => ADDRESS.test(s);
/** `error-code = 1*32(%x41-5A / "_")` */
export const isErrorCodeToken = (s: string): boolean => ERROR_CODE.test(s);
/** `note = 1*256(%x20-7A / "|" / "~")`: printable ASCII without braces. */
export const isNote = (s: string): boolean => NOTE.test(s);

/** The largest `number` of the grammar, 2^64-1. */
export const U64_MAX = 18446744073709551615n;

/**
 * The value of a `number` token (decimal, no leading zero, at most 2^64-1), or
 * `undefined` if the token is not one.
 */
export function parseU64(s: string): bigint | undefined {
  if (!NUMBER.test(s)) return undefined;
  const n = BigInt(s);
  return n <= U64_MAX ? n : undefined;
}

/** Whether `n` can go on the wire as a `number` and be read back exactly. */
export function isWireNumber(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

// C0 controls but TAB, DEL and the C1 controls (SPEC.md 2.4).
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/;
// Invisible and direction-changing format characters a file name may not hold.
const FORMAT = /[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/;

const encoder = new TextEncoder();
// `ignoreBOM` keeps a leading U+FEFF as a character rather than dropping it, so that
// text decodes to exactly the octets that were sent; `fatal` refuses what is not
// UTF-8 (overlong forms and encoded surrogates included).
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The UTF-8 octets of a string. */
export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

/** UTF-8 octets as a string, or `undefined` if they are not valid UTF-8. */
export function fromUtf8(bytes: Uint8Array): string | undefined {
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Octets of a line (ASCII by the grammar) as a string, one character per octet. */
export function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return s;
}

/** Whether a string holds half a surrogate pair, which no UTF-8 can carry. */
export function hasLoneSurrogate(s: string): boolean {
  // A loop rather than a regular expression with lookbehind, which Safari before
  // 16.4 cannot even parse.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && isLowSurrogate(s.charCodeAt(i + 1))) i++;
    else if (c >= 0xd800 && c <= 0xdfff) return true;
  }
  return false;
}

/**
 * Why a string is not `text` of at most `max` octets (SPEC.md 2.4: not empty, UTF-8,
 * no control character but TAB), or `undefined` if it is.
 */
export function textProblem(s: string, max: number): string | undefined {
  if (s.length === 0) return "must not be empty";
  if (hasLoneSurrogate(s)) return "holds a lone UTF-16 surrogate, which is not Unicode text";
  const control = CONTROL.exec(s);
  if (control) return `holds the control character U+${hex4(control[0])}`;
  const octets = utf8Length(s);
  if (octets > max) return `is ${octets} octets long, more than ${max}`;
  return undefined;
}

/**
 * Why a string is not a `file-name` (text of at most 255 octets without `/`, `\`,
 * invisible or direction-changing format characters, and not `.` or `..`), or, with
 * `offer`, not an `offer-name` (which also may not begin with `.`); `undefined` if it is.
 */
export function fileNameProblem(s: string, offer: boolean): string | undefined {
  const text = textProblem(s, 255);
  if (text) return text;
  if (s.includes("/") || s.includes("\\")) return "holds a path separator";
  const format = FORMAT.exec(s);
  if (format) return `holds the format character U+${hex4(format[0])}`;
  if (s === "." || s === "..") return `may not be "${s}"`;
  if (offer && s.startsWith(".")) return "may not begin with '.'";
  return undefined;
}

/** The length of a string's UTF-8 encoding, without encoding it. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && isLowSurrogate(s.charCodeAt(i + 1))) {
      // A surrogate pair: one code point of four octets.
      n += 4;
      i++;
    } else n += 3; // a lone surrogate becomes U+FFFD, three octets
  }
  return n;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

function hex4(ch: string): string {
  return (ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0");
}
