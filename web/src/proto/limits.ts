/**
 * The protocol's fixed limits, and the per-server limits a HELLO reply advertises
 * (SPEC.md section 4.2 and Appendix B).
 */

/** The longest line in either direction, CRLF and payload marker included (SPEC.md 2.1). */
export const LINE_MAX = 1024;

/** The payload limit both sides use before the HELLO reply has come (SPEC.md 2.3). */
export const PRE_HELLO_PAYLOAD = 65_536;

/** The largest payload limit a server may advertise (Appendix B: at most 16 MiB). */
export const PAYLOAD_CEILING = 16 * 1024 * 1024;

/** The largest `limit-value` (14 digits) a key added after the first edition may take. */
export const LIMIT_VALUE_MAX = 99_999_999_999_999;

/** The longest text payload the grammar allows, whatever a server advertises. */
export const TEXT_MAX = 65_536;

/** The longest device label of a session token (SPEC.md 4.7). */
export const TOKEN_LABEL_MAX = 64;

/** Every limit key of Appendix B, in the order a HELLO reply lists them. */
export const LIMIT_KEYS = [
  "line",
  "payload",
  "message",
  "reason",
  "file",
  "chunk",
  "quota",
  "uploads",
  "partial",
  "groups",
  "members",
  "pending",
  "invites",
  "rate",
  "burst",
  "history",
  "page",
  "inflight",
  "sessions",
  "idle",
  "expiry",
  "keys",
  "queue",
  "login",
  "key-count",
  "tokens",
  "password",
  "logins",
  "per-address",
  "frames",
] as const;

/** A limit key of Appendix B. */
export type LimitKey = (typeof LIMIT_KEYS)[number];

/**
 * Every limit a server advertises, by its wire key: sizes in octets, times in
 * seconds, 0 meaning "none" only where Appendix B says so.
 */
export type Limits = Readonly<Record<LimitKey, number>>;

/**
 * What a client assumes for a key that a HELLO reply leaves out: the keys added to
 * version 1 after its first edition (`login` and after, Appendix B's "Absent"). The
 * first edition's keys (`line` to `queue`) have no entry: they must be present.
 */
export const ABSENT_LIMITS: Readonly<Partial<Record<LimitKey, number>>> = {
  login: 0,
  "key-count": 0,
  tokens: 0,
  password: 1,
  logins: 0,
  "per-address": 0,
  frames: 0,
};

/** Whether `key` is a limit key this edition knows. */
export function isLimitKey(key: string): key is LimitKey {
  return (LIMIT_KEYS as readonly string[]).includes(key);
}

/** Whether `key` belongs to version 1's first edition, so must be in every HELLO reply. */
export function isFirstEditionKey(key: LimitKey): boolean {
  return ABSENT_LIMITS[key] === undefined;
}
