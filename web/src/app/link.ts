/**
 * The page's connection to its server: one WebSocket at a time (SPEC.md section
 * 12) driving a sans-IO {@link ClientSession}, logged in with a session token, and
 * reconnecting by itself with backoff (SPEC.md section 9) when the link drops.
 *
 * Requests are promises. A request whose connection is lost before its answer is
 * sent again on the next connection when it is idempotent (SPEC.md 9: reads,
 * SEND with its key, FILE-CHUNK, …), at most {@link RESEND_MAX} times, and fails
 * with {@link LinkError} `lost` otherwise, so that nothing is silently done twice.
 */

import { type Failure, retryDelay } from "../proto/errors";
import { carriesSecret, inClear, isIdempotent } from "../proto/rules";
import { type Answer, ClientSession, type ServerInfo } from "../proto/session";
import type { Command, Event, Item, OkReply } from "../proto/types";
import { SUBPROTOCOL } from "../proto/web";

/** The software the page names in HELLO. */
export const SOFTWARE = "baatkaro-web/0.1.0";

/** The first wait before reconnecting, and the longest (SPEC.md 9). */
export const BACKOFF_MIN_MS = 1_000;
export const BACKOFF_MAX_MS = 60_000;

/** The longest a server's retry hint is honoured (an hour, as the Rust client). */
export const RETRY_HINT_MAX_MS = 3_600_000;

/** How many connections an idempotent request is tried on before it fails. */
export const RESEND_MAX = 3;

/** Longest a PING may go unanswered before the link is taken for dead. */
const PING_TIMEOUT_MS = 20_000;

/** A session token: what the page keeps instead of the password (SPEC.md 12.3). */
export interface Credentials {
  readonly user: string;
  readonly token: number;
  readonly secret: string;
}

/** Where the link is. */
export type LinkStatus =
  | { readonly state: "connecting" }
  | { readonly state: "online" }
  /** Down; the next try is at `retryAt` (a `Date.now()` time). */
  | { readonly state: "waiting"; readonly retryAt: number; readonly reason: string }
  /** Not logged in: the token was refused, or the user logged out. */
  | { readonly state: "signed-out"; readonly reason?: string };

/** Why a request failed, in words a person can act on and in a form code can test. */
export class LinkError extends Error {
  override readonly name = "LinkError";

  constructor(
    /** `refused`: the server said no (see `failure`); `lost`: the connection dropped
     * before the answer and the request is not safe to repeat; `closed`: the page
     * is signed out; `invalid`: the request could not be sent as it is. */
    readonly kind: "refused" | "lost" | "closed" | "invalid",
    message: string,
    readonly failure?: Failure,
  ) {
    super(message);
  }

  /** The SPEC error code of a refusal. */
  get code(): string | undefined {
    return this.failure?.code;
  }
}

/** A successful answer: the final reply and the list items before it. */
export interface Done<R extends OkReply = OkReply> {
  readonly reply: R;
  readonly items: readonly Item[];
}

/** What the owner of a link hears. */
export interface LinkHooks {
  /** An untagged event. */
  onEvent(event: Exclude<Event, { verb: "BYE" }>): void;
  /** The status changed. */
  onStatus(status: LinkStatus): void;
  /**
   * A connection is logged in (the first or a later one): catch up. Requests made
   * from here go out before the ones queued while down.
   */
  onLoggedIn(info: ServerInfo, again: boolean): Promise<void> | void;
}

interface Waiting {
  readonly command: Command;
  readonly resolve: (done: Done) => void;
  readonly reject: (e: LinkError) => void;
  tries: number;
}

/**
 * A refusal that means the token is no good: sign out rather than retry. A `BYE
 * REVOKED` is not one of them: it ends the connection, and the next AUTH says
 * whether this browser's token was the one revoked (a password change ends every
 * other session of the account, including other tabs on the same token).
 */
const CREDENTIAL_CODES = new Set(["AUTH_FAILED", "ACCOUNT_LOCKED"]);

/** The WebSocket address of the server that served this page. */
export function socketUrl(loc: { protocol: string; host: string } = location): string {
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/ws`;
}

/** Turns an answer into a {@link Done}, or throws the refusal as a {@link LinkError}. */
function settle(answer: Answer): Done {
  if (answer.ok) return { reply: answer.reply, items: answer.items };
  const e = answer.error;
  switch (e.kind) {
    case "refused":
      return fail(e.failure);
    case "too-large":
      throw new LinkError("invalid", `the answer was larger than ${e.limit} bytes`);
    case "mismatched":
      throw new LinkError("invalid", `the server answered ${e.reply.verb} to ${answer.verb}`);
    case "undecodable":
      throw new LinkError("invalid", `the server's answer could not be read: ${e.error.message}`);
  }
}

function fail(failure: Failure): never {
  throw new LinkError("refused", describe(failure), failure);
}

/** A refusal in words: the code's meaning, and the server's note if it gave one. */
export function describe(failure: Failure): string {
  const words = failure.code.toLowerCase().replaceAll("_", " ");
  return failure.note ? `${words}: ${failure.note}` : words;
}

/** One connection at a time, logged in with a token, reconnecting by itself. */
export class Link {
  private socket: WebSocket | undefined;
  private session: ClientSession | undefined;
  private readonly inFlight = new Map<string, Waiting>();
  /** Requests made while down, or to be sent again, in order. */
  private queue: Waiting[] = [];
  private creds: Credentials | undefined;
  private online = false;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private keepalive: ReturnType<typeof setInterval> | undefined;
  private lastHeard = 0;
  private lastSent = 0;
  /** When the PING now unanswered went, if one is. */
  private pingSent: number | undefined;
  /** Until when the server asked not to come back (its `retry=`). */
  private hintUntil = 0;
  private connectedOnce = false;
  private status: LinkStatus = { state: "signed-out" };
  /** Whether the user allowed secrets over plain text beyond loopback. */
  private clearAllowed = false;

  constructor(
    private readonly url: string,
    private readonly hooks: LinkHooks,
    private readonly makeSocket: (url: string) => WebSocket = (u) => new WebSocket(u, SUBPROTOCOL),
  ) {}

  /** Whether this link's address carries secrets in plain text beyond this machine. */
  get inClear(): boolean {
    return inClear(this.url);
  }

  /** The user's explicit permission to send secrets in plain text (SPEC.md 11.7). */
  allowInClear(allowed: boolean): void {
    this.clearAllowed = allowed;
  }

  /** The refusal to send a secret over this link, if it is due. */
  private clearRefusal(): LinkError | undefined {
    if (this.clearAllowed || !this.inClear) return undefined;
    const host = new URL(this.url).host;
    return new LinkError(
      "invalid",
      `not sent: ${host} is reached without encryption, so anyone on the network could read the password or session token; allow it first`,
    );
  }

  /** The user logged in, if any. */
  get user(): string | undefined {
    return this.creds?.user;
  }

  /** The number of the session token this page logs in with. */
  get token(): number | undefined {
    return this.creds?.token;
  }

  /** What the server said of itself on the current connection. */
  get server(): ServerInfo | undefined {
    return this.session?.server;
  }

  /** Connects and logs in with a token kept from before. */
  start(creds: Credentials): void {
    this.creds = creds;
    this.connectedOnce = false;
    this.connect();
  }

  /**
   * Logs in with a password (or registers), then makes a session token labelled
   * `label` and stays connected with it. Resolves with the token to keep; the
   * password is forgotten.
   */
  async signIn(user: string, password: string, register: boolean, label: string): Promise<Credentials> {
    const refusal = this.clearRefusal();
    if (refusal) throw refusal;
    this.stop();
    const socket = await this.open();
    const session = new ClientSession();
    const answers = this.collect(socket, session);
    const hello = session.send({ verb: "HELLO", versions: [1], software: SOFTWARE });
    const login = session.send(register ? { verb: "REGISTER", user, password } : { verb: "LOGIN", user, password });
    const token = session.send({ verb: "TOKEN", label });
    for (const s of [hello, login, token]) socket.send(s.bytes);
    try {
      settle(await answers.next(hello.tag));
      settle(await answers.next(login.tag));
      const made = settle(await answers.next(token.tag)).reply;
      if (made.verb !== "TOKEN") throw new LinkError("invalid", "no token came back");
      return { user: session.user ?? user, token: made.token, secret: made.secret };
    } finally {
      answers.stop();
      socket.close(1000);
    }
  }

  /** Sends a command; resolves with its answer, or rejects with a {@link LinkError}. */
  call(command: Command): Promise<Done> {
    return new Promise((resolve, reject) => {
      const waiting: Waiting = { command, resolve, reject, tries: 0 };
      if (!this.creds) return reject(new LinkError("closed", "not logged in"));
      if (this.online) this.transmit(waiting);
      else if (isIdempotent(command)) this.queue.push(waiting);
      else reject(new LinkError("lost", "not connected: try again once the connection is back"));
    });
  }

  /**
   * Tries to connect now instead of waiting out the backoff — but not before the
   * time the server asked for (its `retry=`), unless the person insists (`force`).
   */
  reconnectNow(force = false): void {
    if (!force && Date.now() < this.hintUntil) return;
    if (this.creds && !this.online && this.status.state !== "connecting") {
      clearTimeout(this.timer);
      this.connect();
    }
  }

  /** Logs out (the token is revoked with `revoke`) and forgets the credentials. */
  async logout(revoke: boolean): Promise<void> {
    try {
      if (this.online) await this.call({ verb: "LOGOUT", revoke });
    } finally {
      this.signOut();
    }
  }

  /** Stops and forgets the credentials without telling the server. */
  signOut(reason?: string): void {
    this.stop();
    this.creds = undefined;
    this.setStatus({ state: "signed-out", reason });
  }

  private stop(): void {
    clearTimeout(this.timer);
    clearInterval(this.keepalive);
    const socket = this.socket;
    this.socket = undefined;
    this.session = undefined;
    this.online = false;
    socket?.close(1000);
    const failed = [...this.queue, ...this.inFlight.values()];
    this.queue = [];
    this.inFlight.clear();
    for (const w of failed) w.reject(new LinkError("closed", "signed out"));
  }

  private setStatus(status: LinkStatus): void {
    this.status = status;
    this.hooks.onStatus(status);
  }

  /** A WebSocket, open. */
  private open(): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
      const socket = this.makeSocket(this.url);
      socket.binaryType = "arraybuffer";
      socket.onopen = () => resolve(socket);
      socket.onerror = () => reject(new LinkError("lost", "the server cannot be reached"));
    });
  }

  /** Answers of one socket, awaited by tag (for the sign-in exchange). */
  private collect(socket: WebSocket, session: ClientSession) {
    const got = new Map<string, Answer>();
    const waiters = new Map<string, { resolve: (a: Answer) => void; reject: (e: LinkError) => void }>();
    let broken: LinkError | undefined;
    const breakAll = (e: LinkError) => {
      broken ??= e;
      for (const w of waiters.values()) w.reject(broken);
      waiters.clear();
    };
    socket.onmessage = (m) => {
      for (const out of session.receive(new Uint8Array(m.data as ArrayBuffer))) {
        if (out.kind === "answer") {
          const w = waiters.get(out.tag);
          waiters.delete(out.tag);
          if (w) w.resolve(out);
          else got.set(out.tag, out);
        } else if (out.kind === "closed" && out.reason.why === "bye") {
          breakAll(new LinkError("refused", describe(out.reason.failure), out.reason.failure));
        }
      }
    };
    socket.onclose = () => breakAll(new LinkError("lost", "the connection closed"));
    return {
      next(tag: string): Promise<Answer> {
        const have = got.get(tag);
        if (have) return Promise.resolve(have);
        if (broken) return Promise.reject(broken);
        return new Promise((resolve, reject) => waiters.set(tag, { resolve, reject }));
      },
      stop() {
        socket.onmessage = null;
        socket.onclose = null;
      },
    };
  }

  private transmit(w: Waiting): void {
    const session = this.session;
    const socket = this.socket;
    if (!session || !socket) {
      this.queue.push(w);
      return;
    }
    const refusal = carriesSecret(w.command) ? this.clearRefusal() : undefined;
    if (refusal) {
      w.reject(refusal);
      return;
    }
    let sent;
    try {
      sent = session.send(w.command);
    } catch (e) {
      w.reject(new LinkError("invalid", e instanceof Error ? e.message : String(e)));
      return;
    }
    w.tries += 1;
    this.inFlight.set(sent.tag, w);
    socket.send(sent.bytes);
    this.lastSent = Date.now();
  }

  private connect(): void {
    const creds = this.creds;
    if (!creds) return;
    // AUTH carries the token: never over plain text beyond loopback unallowed.
    if (this.clearRefusal()) return;
    this.setStatus({ state: "connecting" });
    let socket: WebSocket;
    try {
      socket = this.makeSocket(this.url);
    } catch {
      return this.retry("the address is not usable");
    }
    socket.binaryType = "arraybuffer";
    const session = new ClientSession();
    this.socket = socket;
    this.session = session;
    socket.onopen = () => {
      this.lastHeard = Date.now();
      const hello = session.send({ verb: "HELLO", versions: [1], software: SOFTWARE });
      const auth = session.send({ verb: "AUTH", user: creds.user, token: creds.token, secret: creds.secret });
      socket.send(hello.bytes);
      socket.send(auth.bytes);
      this.lastSent = Date.now();
      this.inFlight.set(auth.tag, {
        command: { verb: "AUTH", user: creds.user, token: creds.token, secret: creds.secret },
        tries: 1,
        resolve: () => void this.loggedIn(session),
        reject: (e) => {
          if (e.code && CREDENTIAL_CODES.has(e.code)) this.signOut("your session has ended: log in again");
          else this.drop(socket, e.failure && retryDelay(e.failure), e.message);
        },
      });
    };
    socket.onmessage = (m) => {
      if (socket !== this.socket) return;
      this.lastHeard = Date.now();
      for (const out of session.receive(new Uint8Array(m.data as ArrayBuffer))) {
        switch (out.kind) {
          case "answer": {
            const w = this.inFlight.get(out.tag);
            this.inFlight.delete(out.tag);
            if (!w) break;
            try {
              w.resolve(settle(out));
            } catch (e) {
              w.reject(e as LinkError);
            }
            break;
          }
          case "event":
            this.hooks.onEvent(out.event);
            break;
          case "closed": {
            // Whatever ended it (a BYE, a refusal that closes, a stream that cannot
            // be read), the connection is over: what it left unanswered is judged
            // once, below, and the link goes on with a new one.
            const r = out.reason;
            if (r.why === "bye" && CREDENTIAL_CODES.has(r.failure.code)) {
              this.signOut(describe(r.failure));
              return;
            }
            if (r.why === "logout" || r.why === "deleted") return;
            const failure = r.why === "bye" || r.why === "refused" ? r.failure : undefined;
            const why = failure ? describe(failure) : "the server's answer could not be read";
            this.drop(socket, failure && retryDelay(failure), why, out.unanswered);
            return;
          }
          case "unreadable":
            break;
        }
      }
    };
    socket.onclose = () => {
      if (socket === this.socket) this.drop(socket, undefined, "the connection closed");
    };
  }

  private async loggedIn(session: ClientSession): Promise<void> {
    if (session !== this.session || !session.server) return;
    this.online = true;
    this.attempt = 0;
    const again = this.connectedOnce;
    this.connectedOnce = true;
    this.setStatus({ state: "online" });
    this.startKeepalive(session.server.limits.idle);
    const queued = this.queue;
    this.queue = [];
    // The catch-up's first requests go out first; what was asked while down goes
    // right behind them, without waiting for their answers.
    const catchUp = this.hooks.onLoggedIn(session.server, again);
    for (const w of queued) this.transmit(w);
    await catchUp;
  }

  /**
   * Keeps the link alive and notices a dead one. The server's `idle` counts what
   * it receives (SPEC.md 4.1), so a page that only listens sends a PING when it
   * has sent nothing for a third of it; a PING unanswered for
   * {@link PING_TIMEOUT_MS} means the link is dead.
   */
  private startKeepalive(idleSecs: number): void {
    clearInterval(this.keepalive);
    this.pingSent = undefined;
    const every = Math.max(5_000, Math.min(60_000, (idleSecs * 1000) / 3));
    this.keepalive = setInterval(() => {
      const socket = this.socket;
      if (!socket || !this.online) return;
      const now = Date.now();
      if (this.pingSent !== undefined && this.lastHeard < this.pingSent && now - this.pingSent > PING_TIMEOUT_MS) {
        this.drop(socket, undefined, "the server stopped answering");
        return;
      }
      // Nothing sent for a while (the server's idle counts what it receives), or
      // nothing heard for a while (a half-open link that sending alone would never
      // notice): a PING, whose answer or silence tells.
      const quiet = now - this.lastHeard >= every && this.pingSent === undefined;
      if (now - this.lastSent >= every || quiet) {
        const sentAt = now;
        this.pingSent = sentAt;
        void this.call({ verb: "PING" }).then(
          () => {
            if (this.pingSent === sentAt) this.pingSent = undefined;
          },
          () => {},
        );
      }
    }, Math.min(every, PING_TIMEOUT_MS) / 2);
  }

  /**
   * The connection is gone: what is idempotent is sent again on the next one (up
   * to {@link RESEND_MAX} tries), the rest fails with `lost` — never repeated
   * blindly (SPEC.md 9). `unanswered` is the session's list when it reported the
   * end itself; every request still waiting counts either way.
   */
  private drop(socket: WebSocket, hintMs: number | undefined, reason: string, unanswered?: readonly string[]): void {
    if (socket !== this.socket) return;
    clearInterval(this.keepalive);
    this.socket = undefined;
    const session = this.session;
    this.session = undefined;
    this.online = false;
    socket.onclose = null;
    socket.onmessage = null;
    socket.close();
    const listed = unanswered ?? session?.connectionLost() ?? [];
    const order = [...listed, ...[...this.inFlight.keys()].filter((t) => !listed.includes(t))];
    const again: Waiting[] = [];
    for (const tag of order) {
      const w = this.inFlight.get(tag);
      if (!w || w.command.verb === "AUTH" || w.command.verb === "PING") continue;
      if (isIdempotent(w.command) && w.tries < RESEND_MAX) again.push(w);
      else w.reject(new LinkError("lost", "the connection dropped before the server answered"));
    }
    this.inFlight.clear();
    this.queue = [...again, ...this.queue];
    this.retry(reason, hintMs);
  }

  private retry(reason: string, hintMs?: number): void {
    if (!this.creds) return;
    this.attempt += 1;
    const backoff = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.attempt - 1, 16));
    // Jitter, so that every page of a restarted server does not come back at once.
    const jittered = backoff / 2 + Math.random() * (backoff / 2);
    const wait = hintMs === undefined ? jittered : Math.min(Math.max(hintMs, jittered), RETRY_HINT_MAX_MS);
    this.hintUntil = hintMs === undefined ? 0 : Date.now() + Math.min(hintMs, RETRY_HINT_MAX_MS);
    this.setStatus({ state: "waiting", retryAt: Date.now() + wait, reason });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), wait);
  }
}
