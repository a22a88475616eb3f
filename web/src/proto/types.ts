/**
 * The values of the wire protocol as TypeScript types: every client command
 * (SPEC.md sections 4 and 6) and every server frame (tagged replies, list items and
 * the events of section 7). Each union is discriminated by `verb`, the word that
 * names it on the wire. Numbers are `number`s (the decoder refuses a value past
 * `Number.MAX_SAFE_INTEGER`), payloads of text are `string`s (checked UTF-8, so
 * exactly the octets sent) and binary payloads `Uint8Array`s.
 */

import type { Failure } from "./errors";
import type { Limits } from "./limits";

/** A user or group name: `[a-z][a-z0-9_.-]{0,31}`. */
export type Name = string;

/** A group's conversation, `#group`. */
export type GroupConv = `#${string}`;

/** A conversation: a group's (`#group`) or the private one with a user (`@user`). */
export type Conv = GroupConv | `@${string}`;

/** A group's join rule. */
export type JoinRule = "approval" | "open" | "invite";

/** A member's role in a group. */
export type Role = "owner" | "admin" | "member";

/** A user's relation to a group in a `GROUP` item. */
export type Membership = Role | "invited" | "requested";

/** Whether a user has a session. */
export type Presence = "online" | "offline";

/** A password: any 1 to 1,024 octets; a string is sent as its UTF-8. */
export type Secret = string | Uint8Array;

/** The optional features of SPEC.md 4.2 (a server may announce others, later). */
export type Feature = "files" | "file-cancel" | "tokens" | "account" | "read" | "group-state";

/** Which part of a conversation's history HISTORY asks for. */
export type HistoryRange = "last" | { readonly after: number };

/** A client command: one request's verb and arguments (SPEC.md Appendix A, `command`). */
export type Command =
  | { readonly verb: "HELLO"; readonly versions: readonly number[]; readonly software?: string }
  | { readonly verb: "REGISTER"; readonly user: Name; readonly password: Secret }
  | { readonly verb: "LOGIN"; readonly user: Name; readonly password: Secret }
  | { readonly verb: "AUTH"; readonly user: Name; readonly token: number; readonly secret: string }
  | { readonly verb: "LOGOUT"; readonly revoke?: boolean }
  | { readonly verb: "PING" }
  | { readonly verb: "CREATE"; readonly group: Name; readonly rule?: JoinRule }
  | { readonly verb: "DELETE"; readonly group: Name }
  | { readonly verb: "RULE"; readonly group: Name; readonly rule: JoinRule }
  | { readonly verb: "JOIN"; readonly group: Name; readonly reason?: string }
  | { readonly verb: "REQUESTS"; readonly group: Name }
  | { readonly verb: "APPROVE"; readonly group: Name; readonly user: Name }
  | { readonly verb: "REJECT"; readonly group: Name; readonly user: Name }
  | { readonly verb: "INVITE"; readonly group: Name; readonly user: Name }
  | { readonly verb: "ACCEPT"; readonly group: Name }
  | { readonly verb: "DECLINE"; readonly group: Name }
  | { readonly verb: "LEAVE"; readonly group: Name }
  | { readonly verb: "KICK"; readonly group: Name; readonly user: Name; readonly ban?: boolean }
  | { readonly verb: "UNBAN"; readonly group: Name; readonly user: Name }
  | { readonly verb: "PROMOTE"; readonly group: Name; readonly user: Name }
  | { readonly verb: "DEMOTE"; readonly group: Name; readonly user: Name }
  | { readonly verb: "TRANSFER"; readonly group: Name; readonly user: Name }
  | { readonly verb: "TRANSFER-ACCEPT"; readonly group: Name }
  | { readonly verb: "TRANSFER-CANCEL"; readonly group: Name }
  /** `offers`: items also name a pending ownership offer (the `group-state` feature). */
  | { readonly verb: "GROUPS"; readonly offers?: boolean }
  /** `read`: items also carry the read marker and unread count (the `read` feature). */
  | { readonly verb: "CONVERSATIONS"; readonly read?: boolean }
  | { readonly verb: "MEMBERS"; readonly group: Name }
  | { readonly verb: "ONLINE"; readonly group?: Name }
  | {
      readonly verb: "HISTORY";
      readonly conv: Conv;
      readonly range: HistoryRange;
      /** 1 to 4,294,967,295; the server sends at most its `page` limit. */
      readonly limit: number;
    }
  | { readonly verb: "SEND"; readonly to: Conv; readonly key: string; readonly text: string }
  | {
      readonly verb: "FILE-OFFER";
      readonly to: Conv;
      readonly size: number;
      /** The content's SHA-256, 64 lower-case hex digits. */
      readonly sha256: string;
      /** The display name: a file name that does not begin with `.`. */
      readonly name: string;
    }
  | {
      readonly verb: "FILE-CHUNK";
      readonly file: string;
      readonly offset: number;
      readonly data: Uint8Array;
    }
  | { readonly verb: "FILE-STATUS"; readonly file: string }
  | { readonly verb: "FILE-COMMIT"; readonly file: string }
  | { readonly verb: "FILE-CANCEL"; readonly file: string }
  | { readonly verb: "FILES"; readonly conv: Conv }
  | {
      readonly verb: "FILE-GET";
      readonly file: string;
      readonly offset: number;
      /** Octets to send; 0: to the end of the file. */
      readonly length: number;
    }
  /** Makes a session token labelled with the device (at most 64 octets). */
  | { readonly verb: "TOKEN"; readonly label: string }
  | { readonly verb: "TOKENS" }
  | { readonly verb: "REVOKE"; readonly token: number }
  | { readonly verb: "PASSWORD"; readonly old: Secret; readonly new: Secret }
  | { readonly verb: "DELETE-ACCOUNT"; readonly password: Secret }
  /**
   * Moves the read marker. `seq` may be a `bigint` so that 2^64-1, "everything so
   * far" (SPEC.md 6.8), can be sent.
   */
  | { readonly verb: "READ"; readonly conv: Conv; readonly seq: number | bigint }
  | { readonly verb: "BANS"; readonly group: Name };

/** A client command's verb. */
export type ClientVerb = Command["verb"];

/** Every client verb, in the order of SPEC.md Appendix A's `command` rule. */
export const CLIENT_VERBS: readonly ClientVerb[] = [
  "HELLO", "REGISTER", "LOGIN", "LOGOUT", "PING", "CREATE", "JOIN", "REQUESTS", "APPROVE",
  "REJECT", "INVITE", "ACCEPT", "DECLINE", "LEAVE", "KICK", "UNBAN", "PROMOTE", "DEMOTE",
  "TRANSFER", "TRANSFER-ACCEPT", "TRANSFER-CANCEL", "RULE", "DELETE", "GROUPS",
  "CONVERSATIONS", "MEMBERS", "ONLINE", "SEND", "HISTORY", "FILE-OFFER", "FILE-CHUNK",
  "FILE-STATUS", "FILE-COMMIT", "FILE-CANCEL", "FILES", "FILE-GET", "AUTH", "TOKEN", "TOKENS",
  "REVOKE", "PASSWORD", "DELETE-ACCOUNT", "READ", "BANS",
];

/** One client frame: a tag and a command. */
export interface Request {
  /** `[A-Za-z0-9_.-]{1,32}`, echoed by every reply frame to the request. */
  readonly tag: string;
  /** What is asked. */
  readonly command: Command;
}

/** The commands whose reply is a list of items and then `OK verb count`. */
export type ListVerb =
  | "REQUESTS"
  | "GROUPS"
  | "CONVERSATIONS"
  | "MEMBERS"
  | "ONLINE"
  | "FILES"
  | "TOKENS"
  | "BANS";

/** Every list verb (Appendix A, `list-verb`). */
export const LIST_VERBS: readonly ListVerb[] = [
  "REQUESTS", "GROUPS", "CONVERSATIONS", "MEMBERS", "ONLINE", "FILES", "TOKENS", "BANS",
];

/** The commands whose success reply is the bare verb (Appendix A, `done-verb`). */
export type DoneVerb =
  | "LOGOUT"
  | "PING"
  | "CREATE"
  | "APPROVE"
  | "REJECT"
  | "ACCEPT"
  | "DECLINE"
  | "LEAVE"
  | "KICK"
  | "UNBAN"
  | "PROMOTE"
  | "DEMOTE"
  | "TRANSFER"
  | "TRANSFER-ACCEPT"
  | "TRANSFER-CANCEL"
  | "RULE"
  | "DELETE"
  | "FILE-CANCEL"
  | "REVOKE"
  | "PASSWORD"
  | "DELETE-ACCOUNT";

/** Every done verb. */
export const DONE_VERBS: readonly DoneVerb[] = [
  "LOGOUT", "PING", "CREATE", "APPROVE", "REJECT", "ACCEPT", "DECLINE", "LEAVE", "KICK", "UNBAN",
  "PROMOTE", "DEMOTE", "TRANSFER", "TRANSFER-ACCEPT", "TRANSFER-CANCEL", "RULE", "DELETE",
  "FILE-CANCEL", "REVOKE", "PASSWORD", "DELETE-ACCOUNT",
];

/**
 * The body of a success reply (`tag OK ok-reply`). Its `verb` is always the verb of
 * the command it answers.
 */
export type OkReply =
  | {
      readonly verb: "HELLO";
      /** The version the server chose. */
      readonly version: number;
      /** The server's software. */
      readonly software: string;
      /** The optional features it offers (empty when it lists none). */
      readonly features: readonly string[];
      /** Every limit, keys it left out at their Appendix B "absent" value. */
      readonly limits: Limits;
    }
  /** Logged in as `user`. */
  | { [V in "REGISTER" | "LOGIN" | "AUTH"]: { readonly verb: V; readonly user: Name } }["REGISTER" | "LOGIN" | "AUTH"]
  | { readonly verb: "JOIN"; readonly group: Name; readonly outcome: "joined" | "pending" }
  | {
      readonly verb: "INVITE";
      readonly group: Name;
      readonly user: Name;
      readonly outcome: "invited" | "joined";
    }
  /** Stored with this sequence number at this time (the original ones for a retried key). */
  | { readonly verb: "SEND"; readonly conv: Conv; readonly seq: number; readonly time: number }
  /** `latest`: the newest seq (0: none); `oldest`: the oldest still kept (`latest + 1`: none). */
  | { readonly verb: "HISTORY"; readonly conv: Conv; readonly latest: number; readonly oldest: number }
  /** The list had `count` items. */
  | { [V in ListVerb]: { readonly verb: V; readonly count: number } }[ListVerb]
  /** Upload the content (`need`), or it is shared already as the FILE event `seq` (`done`). */
  | { readonly verb: "FILE-OFFER"; readonly file: string; readonly status: "need" }
  | { readonly verb: "FILE-OFFER"; readonly file: string; readonly status: "done"; readonly seq: number }
  /** `received`: the distinct octets held of the upload in all. */
  | { readonly verb: "FILE-CHUNK"; readonly file: string; readonly received: number }
  | { readonly verb: "FILE-STATUS"; readonly file: string; readonly size: number; readonly received: number }
  | { readonly verb: "FILE-COMMIT"; readonly file: string; readonly conv: Conv; readonly seq: number }
  | { readonly verb: "FILE-GET"; readonly file: string; readonly offset: number; readonly length: number }
  /** A new session token; its secret (64 lower-case hex digits) is shown this once. */
  | { readonly verb: "TOKEN"; readonly token: number; readonly secret: string }
  /** Where the read marker is now. */
  | { readonly verb: "READ"; readonly conv: Conv; readonly seq: number }
  /** Done, nothing more to say. */
  | { [V in DoneVerb]: { readonly verb: V } }[DoneVerb];

/** The success reply to a command with verb `V`. */
export type ReplyTo<V extends ClientVerb> = Extract<OkReply, { readonly verb: V }>;

/**
 * An event stored in a conversation's history: delivered untagged as it happens and
 * replayed as a HISTORY (or FILES) item. Every one starts with `conv`, `seq` and
 * `time` (milliseconds since the epoch).
 */
export type StoredEvent =
  | {
      readonly verb: "MSG";
      readonly conv: Conv;
      readonly seq: number;
      readonly time: number;
      readonly from: Name;
      readonly text: string;
    }
  | {
      readonly verb: "FILE";
      readonly conv: Conv;
      readonly seq: number;
      readonly time: number;
      readonly from: Name;
      readonly file: string;
      readonly size: number;
      readonly sha256: string;
      /** A display label: may begin with `.`; make it safe before saving under it. */
      readonly name: string;
    }
  /** `user` joined, admitted by `by` (themselves for an open group or an invite). */
  | {
      readonly verb: "JOINED" | "KICKED" | "BANNED" | "OFFERED";
      readonly conv: GroupConv;
      readonly seq: number;
      readonly time: number;
      readonly user: Name;
      readonly by: Name;
    }
  | { readonly verb: "LEFT"; readonly conv: GroupConv; readonly seq: number; readonly time: number; readonly user: Name }
  | {
      readonly verb: "ROLE";
      readonly conv: GroupConv;
      readonly seq: number;
      readonly time: number;
      readonly user: Name;
      readonly role: Role;
      readonly by: Name;
    }
  /** `user` is the owner now; `previous`, the former owner, is an admin. */
  | {
      readonly verb: "OWNER";
      readonly conv: GroupConv;
      readonly seq: number;
      readonly time: number;
      readonly user: Name;
      readonly previous: Name;
    }
  | {
      readonly verb: "RULE";
      readonly conv: GroupConv;
      readonly seq: number;
      readonly time: number;
      readonly rule: JoinRule;
      readonly by: Name;
    };

/** The verbs of stored events. */
export const STORED_VERBS: readonly StoredEvent["verb"][] = [
  "MSG", "FILE", "JOINED", "LEFT", "KICKED", "BANNED", "ROLE", "OFFERED", "OWNER", "RULE",
];

/** An untagged event (`* event`, SPEC.md section 7). */
export type Event =
  | StoredEvent
  | {
      readonly verb: "REQUESTED";
      readonly group: Name;
      readonly user: Name;
      readonly time: number;
      readonly reason?: string;
    }
  /** An invitation to `group` from `by`. */
  | { readonly verb: "INVITED"; readonly group: Name; readonly by: Name; readonly time: number }
  | { readonly verb: "APPROVED" | "REJECTED" | "DELETED"; readonly group: Name; readonly by: Name }
  | { readonly verb: "PRESENCE"; readonly user: Name; readonly presence: Presence }
  /** Another session of the user moved its read marker of `conv` to `seq`. */
  | { readonly verb: "READ"; readonly conv: Conv; readonly seq: number }
  /** An error that names no request (its tag could not be read). */
  | { readonly verb: "ERR"; readonly failure: Failure }
  /** The server's last frame before it closes the connection, and why. */
  | { readonly verb: "BYE"; readonly failure: Failure };

/** One element of a list or download, sent before the final reply (`tag item`). */
export type Item =
  | StoredEvent
  /** A pending join request. */
  | {
      readonly verb: "REQUEST";
      readonly group: Name;
      readonly user: Name;
      readonly time: number;
      readonly reason?: string;
    }
  /**
   * One of my groups. `latest` is 0 when I cannot read it yet. `offer` names the
   * member ownership is offered to, in answer to `GROUPS offers` only.
   */
  | {
      readonly verb: "GROUP";
      readonly group: Name;
      readonly membership: Membership;
      readonly rule: JoinRule;
      readonly members: number;
      readonly latest: number;
      readonly offer?: Name;
    }
  /**
   * A conversation I can read and its newest seq; with `CONVERSATIONS read`, my read
   * marker and the unread count after it (exact up to 100 events, "or more" past).
   */
  | {
      readonly verb: "CONV";
      readonly conv: Conv;
      readonly latest: number;
      readonly marker?: { readonly read: number; readonly unread: number };
    }
  | { readonly verb: "MEMBER"; readonly group: Name; readonly user: Name; readonly role: Role; readonly presence: Presence }
  | { readonly verb: "ONLINE"; readonly user: Name }
  /** A range of an upload the server holds. */
  | { readonly verb: "HAVE"; readonly file: string; readonly offset: number; readonly length: number }
  /** Downloaded octets. */
  | { readonly verb: "CHUNK"; readonly file: string; readonly offset: number; readonly data: Uint8Array }
  /** One of my session tokens (times in milliseconds; `address` last used from). */
  | {
      readonly verb: "TOKEN";
      readonly token: number;
      readonly created: number;
      readonly used: number;
      readonly expires: number;
      readonly address: string;
      readonly label: string;
    }
  /** `user` is banned from `group`, by `by`. */
  | { readonly verb: "BAN"; readonly group: Name; readonly user: Name; readonly by: Name };

/** One server frame. */
export type ServerFrame =
  | { readonly kind: "ok"; readonly tag: string; readonly reply: OkReply }
  | { readonly kind: "err"; readonly tag: string; readonly failure: Failure }
  | { readonly kind: "item"; readonly tag: string; readonly item: Item }
  | { readonly kind: "event"; readonly event: Event };
