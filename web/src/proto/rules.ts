/**
 * What the protocol says about commands beyond their syntax: which session state
 * allows each (SPEC.md 4.1), which optional feature it needs (4.2), and which are
 * safe to send again after a lost connection (section 9).
 */

import type { ClientVerb, Command, Feature } from "./types";

/**
 * A connection's state (SPEC.md 4.1): `greeting` until HELLO succeeds,
 * `authenticating` until REGISTER, LOGIN or AUTH succeeds, then `loggedIn`; `closed`
 * once the server has ended it (or LOGOUT or DELETE-ACCOUNT was answered).
 */
export type SessionState = "greeting" | "authenticating" | "loggedIn" | "closed";

const GREETING: ReadonlySet<ClientVerb> = new Set<ClientVerb>(["HELLO", "PING"]);
const AUTHENTICATING: ReadonlySet<ClientVerb> = new Set<ClientVerb>(["REGISTER", "LOGIN", "AUTH", "PING", "LOGOUT"]);
const NOT_LOGGED_IN: ReadonlySet<ClientVerb> = new Set<ClientVerb>(["HELLO", "REGISTER", "LOGIN", "AUTH"]);

/** Whether a command with this verb is allowed in `state` (SPEC.md 4.1's table). */
export function allowedIn(verb: ClientVerb, state: SessionState): boolean {
  switch (state) {
    case "greeting":
      return GREETING.has(verb);
    case "authenticating":
      return AUTHENTICATING.has(verb);
    case "loggedIn":
      return !NOT_LOGGED_IN.has(verb);
    case "closed":
      return false;
  }
}

/**
 * The feature the server must have announced in HELLO for this command (or this
 * form of it) to exist, or `undefined` for a mandatory command. A client MUST NOT
 * send a command of a feature the server did not announce (SPEC.md 10).
 */
export function requiredFeature(command: Command): Feature | undefined {
  switch (command.verb) {
    case "FILE-OFFER":
    case "FILE-CHUNK":
    case "FILE-STATUS":
    case "FILE-COMMIT":
    case "FILES":
    case "FILE-GET":
      return "files";
    case "FILE-CANCEL":
      return "file-cancel";
    case "AUTH":
    case "TOKEN":
    case "TOKENS":
    case "REVOKE":
      return "tokens";
    case "LOGOUT":
      return command.revoke ? "tokens" : undefined;
    case "PASSWORD":
    case "DELETE-ACCOUNT":
      return "account";
    case "READ":
      return "read";
    case "CONVERSATIONS":
      return command.read ? "read" : undefined;
    case "BANS":
      return "group-state";
    case "GROUPS":
      return command.offers ? "group-state" : undefined;
    default:
      return undefined;
  }
}

const IDEMPOTENT: ReadonlySet<ClientVerb> = new Set<ClientVerb>([
  "PING", "REQUESTS", "GROUPS", "CONVERSATIONS", "MEMBERS", "ONLINE", "HISTORY", "FILES",
  "FILE-STATUS", "FILE-GET", "TOKENS", "BANS", "READ", "SEND", "FILE-CHUNK", "FILE-COMMIT",
]);

/**
 * Whether sending the command again on a new connection, after the old one was lost
 * before its final reply, is safe (SPEC.md 9): the reads, READ, SEND with the same
 * key, FILE-CHUNK and FILE-COMMIT. Any other command's outcome is unknown until the
 * client looks; FILE-OFFER in particular shares a held file again each time.
 */
export function isIdempotent(command: Command): boolean {
  return IDEMPOTENT.has(command.verb);
}

/**
 * Whether a connection to the WebSocket address `url` would carry secrets in plain
 * text beyond this machine: a `ws:` address whose host is not loopback (`localhost`,
 * `127.0.0.0/8`, `[::1]`). Such a client MUST NOT send a password or a token unless
 * its user explicitly allows it (SPEC.md 11.7).
 */
export function inClear(url: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return true;
  }
  if (u.protocol !== "ws:") return false;
  const host = u.hostname;
  return !(host === "localhost" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host));
}

/**
 * Whether the command or its reply carries a secret (a password, or a session token:
 * AUTH sends one, TOKEN's reply holds one), which must not cross plain text beyond
 * loopback (SPEC.md 11.7).
 */
export function carriesSecret(command: Command): boolean {
  switch (command.verb) {
    case "REGISTER":
    case "LOGIN":
    case "AUTH":
    case "TOKEN":
    case "PASSWORD":
    case "DELETE-ACCOUNT":
      return true;
    default:
      return false;
  }
}
