/**
 * The client's end of a connection, sans IO (after baatkaro-proto's
 * `ClientSession`): it tags and encodes requests, and routes what the server sends
 * back — each list item and final reply to the request with its tag, each untagged
 * event to the application — while it follows the connection's state (SPEC.md 4.1)
 * and the server's HELLO. It holds no socket and no timer: the page writes the
 * octets {@link ClientSession.send} returns, one WebSocket message each, and passes
 * every message it receives to {@link ClientSession.receive}.
 *
 * ```ts
 * const session = new ClientSession();
 * const hello = session.send({ verb: "HELLO", versions: [1], software: "baatkaro-web/0.1.0" });
 * const login = session.send({ verb: "LOGIN", user: "alice", password: "pw" }); // pipelined
 * socket.send(hello.bytes); socket.send(login.bytes);
 * socket.onmessage = (m) => {
 *   for (const out of session.receive(new Uint8Array(m.data))) {
 *     if (out.kind === "answer" && out.tag === login.tag) { ... }
 *   }
 * };
 * ```
 */

import { DecodeError, EncodeError, type Failure } from "./errors";
import { ServerFrameReader } from "./decode";
import { encodeRequest } from "./encode";
import { LINE_MAX, PAYLOAD_CEILING, PRE_HELLO_PAYLOAD, TOKEN_LABEL_MAX, type Limits } from "./limits";
import { type SessionState, allowedIn, requiredFeature } from "./rules";
import { utf8Length } from "./syntax";
import {
  type ClientVerb,
  type Command,
  type Conv,
  type Event,
  type Item,
  type OkReply,
  STORED_VERBS,
  type Secret,
  type ServerFrame,
  type StoredEvent,
} from "./types";

/**
 * The most octets of list items one answer may hold, by default (64 MiB, as
 * baatkaro-proto's `ANSWER_BYTES_MAX`). A server within its limits stays far below:
 * a HISTORY page fits its connection's `queue`, a FILE-GET returns what was asked.
 */
export const ANSWER_BYTES_MAX = 64 * 1024 * 1024;

/** How a {@link ClientSession} bounds what it holds. */
export interface SessionOptions {
  /**
   * The most octets (on the wire) of items one request's answer may hold; past it
   * the request fails alone (`too-large`) and its items are let go. Default
   * {@link ANSWER_BYTES_MAX}.
   */
  readonly maxAnswerBytes?: number;
}

/** What the server said of itself in its HELLO reply. */
export interface ServerInfo {
  /** The protocol version it chose. */
  readonly version: number;
  /** Its software. */
  readonly software: string;
  /** The optional features it offers. */
  readonly features: readonly string[];
  /** Every limit it enforces. */
  readonly limits: Limits;
}

/** A request ready to go: its tag, and the octets to write as one WebSocket message. */
export interface Sent {
  /** The tag every reply frame to it carries (`c1`, `c2`, …). */
  readonly tag: string;
  /** The whole frame. */
  readonly bytes: Uint8Array;
}

/** Why a request failed, when it did. */
export type AnswerError =
  /** The server answered ERR. */
  | { readonly kind: "refused"; readonly failure: Failure }
  /**
   * A frame with the request's tag could not be read (an error code, item or field
   * of a later edition, or a broken frame); later frames of the request are dropped.
   */
  | { readonly kind: "undecodable"; readonly error: DecodeError }
  /** The server answered OK for another verb than the request's. */
  | { readonly kind: "mismatched"; readonly reply: OkReply }
  /** Its items passed `maxAnswerBytes`; they were let go. The connection goes on. */
  | { readonly kind: "too-large"; readonly limit: number };

/**
 * A request's answer: its items, in order, and its final reply. When `ok`, `reply`
 * has the request's verb (narrow on `reply.verb`).
 */
export type Answer = {
  readonly kind: "answer";
  /** The request's tag. */
  readonly tag: string;
  /** The request's verb. */
  readonly verb: ClientVerb;
  /** The list items the server sent before its final reply. */
  readonly items: readonly Item[];
} & ({ readonly ok: true; readonly reply: OkReply } | { readonly ok: false; readonly error: AnswerError });

/** Why the connection is over. */
export type CloseReason =
  /** The server's `* BYE`, its last frame. */
  | { readonly why: "bye"; readonly failure: Failure }
  /** LOGOUT was answered: the server closes the connection. */
  | { readonly why: "logout" }
  /** DELETE-ACCOUNT was answered: the account is gone and the server closes. */
  | { readonly why: "deleted" }
  /**
   * A request was refused with a code after which the server closes at once, without
   * BYE: `UNSUPPORTED_VERSION` (HELLO) or `TOO_MANY_CONNECTIONS` (LOGIN, AUTH).
   */
  | { readonly why: "refused"; readonly tag: string; readonly failure: Failure }
  /** The server's stream is out of step (`BAD_PAYLOAD_END`); nothing more can be read. */
  | { readonly why: "undecodable"; readonly error: DecodeError };

/** What {@link ClientSession.receive} hands the application, in the order it arrived. */
export type SessionOutput =
  | Answer
  /** An untagged event (BYE comes as `closed` instead). */
  | { readonly kind: "event"; readonly event: Exclude<Event, { readonly verb: "BYE" }> }
  /**
   * A frame that could not be read and names no waiting request: an event of a later
   * edition (which a client ignores, SPEC.md 10) or a broken one.
   */
  | { readonly kind: "unreadable"; readonly error: DecodeError }
  /**
   * The connection is over. `unanswered` lists, in the order they were sent, the
   * requests that will get no final reply: whether the server carried them out is
   * unknown (see `isIdempotent`).
   */
  | { readonly kind: "closed"; readonly reason: CloseReason; readonly unanswered: readonly string[] };

/**
 * A command the session will not send: the connection is over, the command is not
 * allowed in the state the requests before it lead to, or the server did not
 * announce the feature it belongs to.
 */
export class SessionError extends Error {
  override readonly name = "SessionError";

  /** @param reason what is wrong; @param message a sentence for a person. */
  constructor(
    readonly reason: "closed" | "wrong-state" | "feature",
    message: string,
  ) {
    super(message);
  }
}

/** A request waiting for its final reply. */
interface Pending {
  readonly verb: ClientVerb;
  items: Item[];
  /** The items' octets on the wire: what `maxAnswerBytes` bounds. */
  bytes: number;
  tooLarge: boolean;
}

/** The verbs whose success moves the connection to another state. */
const TRANSITIONS: ReadonlySet<ClientVerb> = new Set<ClientVerb>([
  "HELLO", "REGISTER", "LOGIN", "AUTH", "LOGOUT", "DELETE-ACCOUNT",
]);

/** The state after a transition request succeeds in `state`. */
function after(state: SessionState, verb: ClientVerb): SessionState {
  switch (verb) {
    case "HELLO":
      return state === "greeting" ? "authenticating" : state;
    case "REGISTER":
    case "LOGIN":
    case "AUTH":
      return state === "authenticating" ? "loggedIn" : state;
    case "LOGOUT":
    case "DELETE-ACCOUNT":
      return "closed";
    default:
      return state;
  }
}

/**
 * One connection's client side: requests out, answers and events in. Requests may
 * be pipelined: each is judged in the state the requests before it lead to if they
 * succeed (HELLO then LOGIN then GROUPS may go at once: the server reads nothing
 * past a LOGIN until it has answered it, SPEC.md 3).
 */
export class ClientSession {
  private readonly reader = new ServerFrameReader(PRE_HELLO_PAYLOAD);
  private readonly maxAnswerBytes: number;
  private readonly pending = new Map<string, Pending>();
  /** The transition requests waiting for their final reply, in the order sent. */
  private transitions: { readonly tag: string; readonly verb: ClientVerb }[] = [];
  private nextTag = 1;
  private current: SessionState = "greeting";
  private info: ServerInfo | undefined;
  private loggedInAs: string | undefined;
  private readonly newest = new Map<Conv, number>();

  /** @param options bounds; see {@link SessionOptions}. */
  constructor(options: SessionOptions = {}) {
    this.maxAnswerBytes = options.maxAnswerBytes ?? ANSWER_BYTES_MAX;
  }

  /** The connection's state, as the server's answers so far have made it. */
  get state(): SessionState {
    return this.current;
  }

  /**
   * The state the connection will be in once every request sent so far has
   * succeeded: the one the next request is judged in.
   */
  get expectedState(): SessionState {
    let state = this.current;
    for (const t of this.transitions) state = after(state, t.verb);
    return state;
  }

  /** The server's HELLO reply, once it has come. */
  get server(): ServerInfo | undefined {
    return this.info;
  }

  /**
   * The largest WebSocket message the server may send (SPEC.md 12.2, the WebSocket
   * binding): 65,536 octets plus the `line` and `payload` limits it advertised, or
   * the limits before the handshake until its HELLO reply has come. A client SHOULD
   * close the WebSocket with status 1009 on a larger message.
   */
  get maxMessage(): number {
    const limits = this.info?.limits;
    return 65_536 + (limits ? limits.line + limits.payload : LINE_MAX + PRE_HELLO_PAYLOAD);
  }

  /** Who the session logged in as (REGISTER, LOGIN or AUTH answered OK). */
  get user(): string | undefined {
    return this.loggedInAs;
  }

  /**
   * The newest sequence number seen of each conversation, in events, HISTORY items
   * and SEND replies: where catching up after a reconnect starts (SPEC.md 5.3).
   */
  get seen(): ReadonlyMap<Conv, number> {
    return this.newest;
  }

  /** How many requests wait for their final reply. */
  get waiting(): number {
    return this.pending.size;
  }

  /** Whether the connection is over. */
  private get over(): boolean {
    return this.current === "closed";
  }

  /** Whether the request with this tag still waits for its final reply. */
  isPending(tag: string): boolean {
    return this.pending.has(tag);
  }

  /** Whether the server announced this feature (false until its HELLO reply has come). */
  hasFeature(feature: string): boolean {
    return this.info?.features.includes(feature) ?? false;
  }

  /**
   * Tags and encodes a request. Throws a {@link SessionError} if the session will not
   * send it now, or an {@link EncodeError} if the server would refuse it as malformed
   * or, once its limits are known, as over one of them (`TEXT_TOO_LONG`,
   * `PASSWORD_TOO_SHORT`, `FILE_TOO_LARGE`); nothing is sent or remembered then.
   */
  send(command: Command): Sent {
    if (this.current === "closed") throw new SessionError("closed", "the connection is over");
    const state = this.expectedState;
    if (!allowedIn(command.verb, state)) {
      const where = state === "closed" ? "after LOGOUT or DELETE-ACCOUNT" : `in the ${state} state`;
      throw new SessionError("wrong-state", `${command.verb} is not allowed ${where}`);
    }
    const feature = requiredFeature(command);
    // Before the HELLO reply the features are unknown: the command goes, and a server
    // without the feature answers UNKNOWN_COMMAND.
    if (feature !== undefined && this.info !== undefined && !this.hasFeature(feature)) {
      throw new SessionError("feature", `the server does not offer the ${feature} feature`);
    }
    const tag = `c${this.nextTag}`;
    const maxPayload = this.info ? Math.min(this.info.limits.payload, PAYLOAD_CEILING) : PRE_HELLO_PAYLOAD;
    const bytes = encodeRequest({ tag, command }, { maxPayload });
    this.checkLimits(command);
    this.nextTag += 1;
    this.pending.set(tag, { verb: command.verb, items: [], bytes: 0, tooLarge: false });
    if (TRANSITIONS.has(command.verb)) this.transitions.push({ tag, verb: command.verb });
    return { tag, bytes };
  }

  /** Refuses what the server's advertised limits (or SPEC's fixed ones) rule out. */
  private checkLimits(command: Command): void {
    const tooLong = (field: string, octets: number, max: number) => {
      if (octets > max) throw new EncodeError("TEXT_TOO_LONG", field, `${octets} octets, more than the server's ${max}`);
    };
    if (command.verb === "TOKEN") tooLong("label", utf8Length(command.label), TOKEN_LABEL_MAX);
    const limits = this.info?.limits;
    if (!limits) return;
    const tooShort = (field: string, p: Secret) => {
      const octets = typeof p === "string" ? utf8Length(p) : p.length;
      if (octets < limits.password) {
        throw new EncodeError("PASSWORD_TOO_SHORT", field, `a password has at least ${limits.password} octets here`);
      }
    };
    switch (command.verb) {
      case "SEND":
        return tooLong("text", utf8Length(command.text), limits.message);
      case "JOIN":
        return command.reason === undefined ? undefined : tooLong("reason", utf8Length(command.reason), limits.reason);
      case "REGISTER":
        return tooShort("password", command.password);
      case "PASSWORD":
        return tooShort("new", command.new);
      case "FILE-OFFER":
        if (command.size > limits.file) {
          throw new EncodeError("FILE_TOO_LARGE", "size", `${command.size} octets, more than the server's ${limits.file}`);
        }
        return;
      default:
        return;
    }
  }

  /**
   * The octets of one or more WebSocket messages (any split works): decodes every
   * whole frame and returns what it means, in order. After the connection is over,
   * returns nothing.
   */
  receive(chunk: Uint8Array): SessionOutput[] {
    const out: SessionOutput[] = [];
    for (const decoded of this.over ? [] : this.reader.read(chunk)) {
      if (decoded.ok) this.onFrame(decoded.frame, decoded.size, out);
      else this.onError(decoded.error, out);
      // Nothing after the end is the server's to say (BYE is its last frame).
      if (this.over) break;
    }
    return out;
  }

  /**
   * The transport closed. Returns the requests that got no final reply, in the order
   * they were sent (none if the session had already reported `closed`); the session
   * sends and reads nothing more.
   */
  connectionLost(): string[] {
    return this.close();
  }

  private onFrame(frame: ServerFrame, size: number, out: SessionOutput[]): void {
    switch (frame.kind) {
      case "item": {
        const { item } = frame;
        if (isStored(item)) this.saw(item.conv, item.seq);
        const p = this.pending.get(frame.tag);
        // An item for no waiting request can only be the server's mistake: dropped.
        if (!p || p.tooLarge) return;
        p.bytes += size;
        if (p.bytes > this.maxAnswerBytes) {
          // The request fails alone; what it held is let go at once.
          p.tooLarge = true;
          p.items = [];
        } else {
          p.items.push(item);
        }
        return;
      }
      case "ok":
        return this.onOk(frame.tag, frame.reply, out);
      case "err": {
        const p = this.finish(frame.tag);
        if (!p) return;
        out.push(failedAnswer(frame.tag, p, { kind: "refused", failure: frame.failure }));
        const code = frame.failure.code;
        if (code === "UNSUPPORTED_VERSION" || code === "TOO_MANY_CONNECTIONS") {
          this.closed({ why: "refused", tag: frame.tag, failure: frame.failure }, out);
        }
        return;
      }
      case "event": {
        const { event } = frame;
        if (event.verb === "BYE") return this.closed({ why: "bye", failure: event.failure }, out);
        if (isStored(event)) this.saw(event.conv, event.seq);
        out.push({ kind: "event", event });
        return;
      }
    }
  }

  private onOk(tag: string, reply: OkReply, out: SessionOutput[]): void {
    const p = this.finish(tag);
    // A reply to a tag never sent (or answered already) names no one waiting.
    if (!p) return;
    if (p.tooLarge) {
      out.push(failedAnswer(tag, p, { kind: "too-large", limit: this.maxAnswerBytes }));
      return;
    }
    if (reply.verb !== p.verb) {
      out.push(failedAnswer(tag, p, { kind: "mismatched", reply }));
      return;
    }
    switch (reply.verb) {
      case "HELLO":
        this.info = { version: reply.version, software: reply.software, features: reply.features, limits: reply.limits };
        this.current = after(this.current, "HELLO");
        // Frames after this one may carry payloads up to the advertised limit.
        this.reader.maxPayload = Math.min(reply.limits.payload, PAYLOAD_CEILING);
        break;
      case "REGISTER":
      case "LOGIN":
      case "AUTH":
        this.loggedInAs = reply.user;
        this.current = after(this.current, reply.verb);
        break;
      case "SEND":
        this.saw(reply.conv, reply.seq);
        break;
    }
    out.push({ kind: "answer", tag, verb: p.verb, items: p.items, ok: true, reply });
    if (reply.verb === "LOGOUT") this.closed({ why: "logout" }, out);
    if (reply.verb === "DELETE-ACCOUNT") this.closed({ why: "deleted" }, out);
  }

  private onError(error: DecodeError, out: SessionOutput[]): void {
    if (error.fatal) return this.closed({ why: "undecodable", error }, out);
    const { tag } = error;
    const p = tag === undefined ? undefined : this.finish(tag);
    if (tag !== undefined && p) {
      out.push(failedAnswer(tag, p, { kind: "undecodable", error }));
    } else {
      out.push({ kind: "unreadable", error });
    }
  }

  /** Takes a request off the waiting list for its final reply. */
  private finish(tag: string): Pending | undefined {
    const p = this.pending.get(tag);
    if (!p) return undefined;
    this.pending.delete(tag);
    if (TRANSITIONS.has(p.verb)) this.transitions = this.transitions.filter((t) => t.tag !== tag);
    return p;
  }

  private closed(reason: CloseReason, out: SessionOutput[]): void {
    out.push({ kind: "closed", reason, unanswered: this.close() });
  }

  private close(): string[] {
    const unanswered = [...this.pending.keys()];
    this.pending.clear();
    this.transitions = [];
    this.current = "closed";
    return unanswered;
  }

  private saw(conv: Conv, seq: number): void {
    const known = this.newest.get(conv);
    if (known === undefined || seq > known) this.newest.set(conv, seq);
  }
}

/** The answer of a request that failed, with the items it got (none once too large). */
function failedAnswer(tag: string, p: Pending, error: AnswerError): Answer {
  return { kind: "answer", tag, verb: p.verb, items: p.items, ok: false, error };
}

const STORED: ReadonlySet<string> = new Set(STORED_VERBS);

/** Whether an item or event is a stored event (which carries `conv` and `seq`). */
export function isStored(x: Item | Event): x is StoredEvent {
  return STORED.has(x.verb);
}
