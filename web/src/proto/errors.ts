/**
 * The error registry of SPEC.md Appendix C, and the errors this layer throws or
 * returns: {@link EncodeError} (a command the server would refuse, caught before it
 * is sent) and {@link DecodeError} (a frame from the server that cannot be read).
 */

/** Every error code of SPEC.md Appendix C, in the order of its table. */
export const ERROR_CODES = [
  "LINE_TOO_LONG",
  "BAD_LINE_END",
  "PAYLOAD_TOO_LARGE",
  "BAD_PAYLOAD_END",
  "BAD_TAG",
  "UNKNOWN_COMMAND",
  "SYNTAX",
  "BAD_NAME",
  "BAD_TEXT",
  "BAD_FILE_NAME",
  "UNSUPPORTED_VERSION",
  "HELLO_REQUIRED",
  "WRONG_STATE",
  "AUTH_REQUIRED",
  "AUTH_FAILED",
  "USER_EXISTS",
  "REGISTRATION_CLOSED",
  "RATE_LIMITED",
  "NO_SUCH_USER",
  "NO_SUCH_GROUP",
  "GROUP_EXISTS",
  "NOT_MEMBER",
  "ALREADY_MEMBER",
  "ALREADY_PENDING",
  "NO_SUCH_REQUEST",
  "NO_SUCH_INVITE",
  "NO_SUCH_OFFER",
  "BANNED",
  "NOT_BANNED",
  "INVITE_ONLY",
  "NOT_PERMITTED",
  "OWNER_MUST_TRANSFER",
  "NO_CHANGE",
  "GROUP_FULL",
  "TOO_MANY_PENDING",
  "TOO_MANY_INVITES",
  "TOO_MANY_GROUPS",
  "TEXT_TOO_LONG",
  "KEY_CONFLICT",
  "BAD_RANGE",
  "FILE_TOO_LARGE",
  "QUOTA_EXCEEDED",
  "TOO_MANY_UPLOADS",
  "NO_SUCH_FILE",
  "HASH_MISMATCH",
  "UPLOAD_INCOMPLETE",
  "STORAGE_FULL",
  "STORE_DAMAGED",
  "NO_SUCH_TOKEN",
  "PASSWORD_TOO_SHORT",
  "ACCOUNT_LOCKED",
  "INTERNAL",
  "SHUTTING_DOWN",
  "SLOW_CONSUMER",
  "IDLE_TIMEOUT",
  "LOGIN_TIMEOUT",
  "TOO_MANY_CONNECTIONS",
  "REVOKED",
] as const;

/** A stable, machine-readable error code of the wire protocol (SPEC.md section 8). */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** The codes after which the server closes the connection ("closed" in Appendix C). */
const CLOSING: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "BAD_PAYLOAD_END",
  "UNSUPPORTED_VERSION",
  "SHUTTING_DOWN",
  "SLOW_CONSUMER",
  "IDLE_TIMEOUT",
  "LOGIN_TIMEOUT",
  "TOO_MANY_CONNECTIONS",
  "REVOKED",
]);

/** The codes that may carry a `retry=` hint ("yes" in Appendix C's retry column). */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "RATE_LIMITED",
  "TOO_MANY_UPLOADS",
  "STORAGE_FULL",
  "STORE_DAMAGED",
  "INTERNAL",
  "SHUTTING_DOWN",
  "TOO_MANY_CONNECTIONS",
]);

const KNOWN: ReadonlySet<string> = new Set(ERROR_CODES);

/** Whether `s` is a code of this edition's registry. */
export function isErrorCode(s: string): s is ErrorCode {
  return KNOWN.has(s);
}

/** Whether the server closes the connection after sending this code (Appendix C). */
export function closesConnection(code: ErrorCode): boolean {
  return CLOSING.has(code);
}

/** Whether a failure with this code may carry a `retry=` hint (Appendix C). */
export function allowsRetry(code: ErrorCode): boolean {
  return RETRYABLE.has(code);
}

/**
 * A failure as the server sends it: `error-code [SP "retry=" number] [SP ":" note]`,
 * in a tagged `ERR` reply or an untagged `ERR` or `BYE` event.
 */
export interface Failure {
  /** The code, from Appendix C. */
  readonly code: ErrorCode;
  /**
   * Milliseconds the server asks the client to wait before trying again, exactly as
   * sent; use {@link retryDelay}, which ignores it on codes that may not carry one.
   */
  readonly retryMs?: number;
  /** Human-readable text, never to be interpreted (printable ASCII, no braces). */
  readonly note?: string;
}

/**
 * The wait a failure asks for, in milliseconds: its `retry=` hint where its code
 * allows one (SPEC.md section 3 says a client ignores it on other codes), else
 * `undefined`.
 */
export function retryDelay(failure: Failure): number | undefined {
  return allowsRetry(failure.code) ? failure.retryMs : undefined;
}

/**
 * A command that the server would refuse as malformed (or, where the session knows
 * the server's limits, refuse by a limit), found before anything was sent. `code` is
 * the error the server would have answered with; `field` names the offending part of
 * the command (`"group"`, `"text"`, …; `"line"` for the whole frame).
 */
export class EncodeError extends Error {
  override readonly name = "EncodeError";

  /** @param code the server's code for it; @param field the command's field at fault. */
  constructor(
    readonly code: ErrorCode,
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/**
 * A frame that could not be read. `tag` is the tag at the start of its line when one
 * could be read (the frame then belongs to that request), `undefined` otherwise.
 * After a non-fatal error the decoder has already resynchronised; after a fatal one
 * (`BAD_PAYLOAD_END`: the stream is out of step) it reads nothing more.
 */
export class DecodeError extends Error {
  override readonly name = "DecodeError";

  /** @param code the SPEC.md code for what is wrong; @param tag the frame's tag, if readable. */
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly tag?: string,
  ) {
    super(message);
  }

  /** Whether the byte stream is unusable after this error. */
  get fatal(): boolean {
    return this.code === "BAD_PAYLOAD_END";
  }

  /** The same error, attributed to the request with this tag. */
  withTag(tag: string | undefined): DecodeError {
    return new DecodeError(this.code, this.message, tag);
  }
}
