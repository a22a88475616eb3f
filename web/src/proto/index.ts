/**
 * The web client's protocol layer for BaatKaro (SPEC.md at the repository root is
 * normative), sans IO: typed commands and server frames, an encoder that refuses
 * what the server would refuse, a streaming decoder of server frames, and a client
 * session that tags requests and routes replies, items and events. Nothing here
 * opens a socket or reads a clock.
 *
 * The test-only halves (a client-frame decoder and a server-frame encoder) live in
 * `./testing/` and are not exported here, so the bundle does not carry them.
 */

export * from "./types";
export {
  ERROR_CODES,
  type ErrorCode,
  type Failure,
  DecodeError,
  EncodeError,
  allowsRetry,
  closesConnection,
  isErrorCode,
  retryDelay,
} from "./errors";
export {
  ABSENT_LIMITS,
  LIMIT_KEYS,
  LIMIT_VALUE_MAX,
  LINE_MAX,
  PAYLOAD_CEILING,
  PRE_HELLO_PAYLOAD,
  TEXT_MAX,
  TOKEN_LABEL_MAX,
  type LimitKey,
  type Limits,
} from "./limits";
export { type EncodeOptions, encodeRequest } from "./encode";
export { ServerFrameReader, parseServerFrame } from "./decode";
export { type Decoded, type FrameParser, FrameReader } from "./framer";
export { type SessionState, allowedIn, carriesSecret, inClear, isIdempotent, requiredFeature } from "./rules";
export { fileNameProblem, isName, textProblem, utf8, utf8Length } from "./syntax";
export {
  ANSWER_BYTES_MAX,
  type Answer,
  type AnswerError,
  ClientSession,
  type CloseReason,
  type Sent,
  type ServerInfo,
  type SessionOptions,
  type SessionOutput,
  SessionError,
  isStored,
} from "./session";
