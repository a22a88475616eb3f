/**
 * What the page knows, as signals the views read: who is logged in, the link's
 * status, the user's groups and conversations with their read markers, the
 * events loaded of each conversation, members, presence and pending requests.
 *
 * Pure bookkeeping: nothing here talks to the server (that is {@link Controller}'s),
 * so the rules of how an event changes what the page shows are tested directly.
 */

import { signal } from "@preact/signals";

import type { ServerInfo } from "../proto/session";
import type { Conv, Event, Item, JoinRule, Membership, Name, Presence, Role, StoredEvent } from "../proto/types";
import type { LinkStatus } from "./link";

/** Whether the page is out of sight (and so nothing in it is being read). */
export function pageHidden(): boolean {
  return typeof document !== "undefined" && document.hidden;
}

/** One of the user's groups, as GROUPS lists it. */
export interface Group {
  readonly name: Name;
  readonly membership: Membership;
  readonly rule: JoinRule;
  readonly members: number;
  /** The member ownership is offered to, if it is. */
  readonly offer?: Name;
}

/** A member of a group, as MEMBERS lists it, kept current by events. */
export interface Member {
  readonly user: Name;
  readonly role: Role;
  readonly presence: Presence;
}

/** A pending join request. */
export interface JoinRequest {
  readonly user: Name;
  readonly time: number;
  readonly reason?: string;
}

/** A conversation: where its history stands, and what of it is loaded. */
export class Conversation {
  /** The newest sequence number known. */
  latest = 0;
  /** The read marker: the newest seq the user has seen. */
  read = 0;
  /** Unread events after the marker, as the server counted them or since. */
  unread = 0;
  /** The server counted only the 100 events after the marker, and there are more
   * (SPEC.md 6.8): `unread` means "this many or more". */
  more = false;
  /** The read marker when the conversation was opened with something unread: the
   * "new messages" line goes after it. */
  openedAt: number | undefined;
  /** The oldest seq still kept (1 until a HISTORY says otherwise). */
  oldest = 1;
  /** Loaded events, by seq. */
  readonly events = new Map<number, StoredEvent>();
  /** First seqs of the pages being fetched. */
  readonly loading = new Set<number>();

  constructor(readonly conv: Conv) {}

  /** Takes an event in; returns whether it is new. */
  add(event: StoredEvent): boolean {
    if (this.events.has(event.seq)) return false;
    this.events.set(event.seq, event);
    if (event.seq > this.latest) this.latest = event.seq;
    return true;
  }
}

/** A line for the person at the top of the page: what went wrong, or happened. */
export interface Notice {
  readonly id: number;
  readonly text: string;
  readonly tone: "error" | "info";
  /** When it goes away by itself (a `Date.now()` time). */
  readonly until: number;
}

/** Everything the views show. */
export class State {
  readonly status = signal<LinkStatus>({ state: "signed-out" });
  readonly me = signal<Name | undefined>(undefined);
  readonly server = signal<ServerInfo | undefined>(undefined);
  readonly groups = signal<readonly Group[]>([]);
  readonly conversations = new Map<Conv, Conversation>();
  /** Bumped whenever a conversation, its events or its counts change. */
  readonly revision = signal(0);
  readonly current = signal<Conv | undefined>(undefined);
  /** Bumped when a file is shared anywhere: file lists read again. */
  readonly filesShared = signal(0);
  readonly members = signal<ReadonlyMap<Name, readonly Member[]>>(new Map());
  readonly requests = signal<ReadonlyMap<Name, readonly JoinRequest[]>>(new Map());
  readonly notices = signal<readonly Notice[]>([]);
  private nextNotice = 1;

  /** The conversation, made if unknown. */
  conversation(conv: Conv): Conversation {
    let c = this.conversations.get(conv);
    if (!c) {
      c = new Conversation(conv);
      this.conversations.set(conv, c);
    }
    return c;
  }

  /** Something changed in the conversations: the views read them again. */
  touch(): void {
    this.revision.value += 1;
  }

  /** Shows a notice for a while. */
  notify(text: string, tone: Notice["tone"] = "info"): number {
    const id = this.nextNotice++;
    // Bounded: only the newest few stay.
    const until = Date.now() + (tone === "error" ? 10_000 : 5_000);
    this.notices.value = [...this.notices.value.slice(-4), { id, text, tone, until }];
    return id;
  }

  dismiss(id: number): void {
    this.notices.value = this.notices.value.filter((n) => n.id !== id);
  }

  /** The user's group `name`, if they belong to it in any way. */
  group(name: Name): Group | undefined {
    return this.groups.value.find((g) => g.name === name);
  }

  /** The user's role in `group`, if a member. */
  roleIn(group: Name): Role | undefined {
    const m = this.group(group)?.membership;
    return m === "owner" || m === "admin" || m === "member" ? m : undefined;
  }

  /** Takes in the items of GROUPS. */
  setGroups(items: readonly Item[]): void {
    const groups: Group[] = [];
    for (const i of items) {
      if (i.verb === "GROUP") {
        groups.push({ name: i.group, membership: i.membership, rule: i.rule, members: i.members, offer: i.offer });
        if (i.membership === "owner" || i.membership === "admin" || i.membership === "member") {
          const c = this.conversation(`#${i.group}`);
          c.latest = Math.max(c.latest, i.latest);
        }
      }
    }
    this.groups.value = groups;
    this.touch();
  }

  /** Takes in the items of CONVERSATIONS (with `read`). */
  setConversations(items: readonly Item[]): void {
    for (const i of items) {
      if (i.verb !== "CONV") continue;
      const c = this.conversation(i.conv);
      c.latest = Math.max(c.latest, i.latest);
      if (i.marker) {
        c.read = i.marker.read;
        const reading = i.conv === this.current.value && !pageHidden();
        c.unread = reading ? 0 : i.marker.unread;
        c.more = !reading && i.latest - i.marker.read > 100;
      }
    }
    this.touch();
  }

  /** Takes in the items of MEMBERS. */
  setMembers(group: Name, items: readonly Item[]): void {
    const list: Member[] = [];
    for (const i of items) if (i.verb === "MEMBER") list.push({ user: i.user, role: i.role, presence: i.presence });
    const next = new Map(this.members.value);
    next.set(group, list);
    this.members.value = next;
  }

  /** Takes in the items of REQUESTS. */
  setRequests(group: Name, items: readonly Item[]): void {
    const list: JoinRequest[] = [];
    for (const i of items) if (i.verb === "REQUEST") list.push({ user: i.user, time: i.time, reason: i.reason });
    const next = new Map(this.requests.value);
    next.set(group, list);
    this.requests.value = next;
  }

  /** Removes `user`'s request to join `group` (answered). */
  dropRequest(group: Name, user: Name): void {
    const list = this.requests.value.get(group);
    if (!list) return;
    const next = new Map(this.requests.value);
    next.set(group, list.filter((r) => r.user !== user));
    this.requests.value = next;
  }

  /**
   * Takes in a stored event that arrived live. Returns whether it is new and
   * counts as unread (not the user's own, not in the conversation being read).
   */
  stored(event: StoredEvent, reading: boolean): boolean {
    const c = this.conversation(event.conv);
    if (!c.add(event)) return false;
    if (event.verb === "FILE") this.filesShared.value += 1;
    const own = "from" in event && event.from === this.me.value;
    // SPEC.md 6.8: unread are the messages and files of others.
    const counts = (event.verb === "MSG" || event.verb === "FILE") && !own;
    let unread = false;
    if (own) {
      // Whoever writes has read what came before.
      c.read = Math.max(c.read, event.seq);
      c.unread = 0;
    } else if (reading) {
      // Seen as it came: the controller moves the marker (and tells the server).
      c.unread = 0;
    } else if (counts && event.seq > c.read) {
      c.unread += 1;
      unread = true;
    }
    this.touch();
    return unread;
  }

  /** Applies an event that changes presence, membership lists or requests. */
  apply(event: Event): void {
    switch (event.verb) {
      case "PRESENCE": {
        const next = new Map<Name, readonly Member[]>();
        for (const [g, list] of this.members.value) {
          next.set(g, list.map((m) => (m.user === event.user ? { ...m, presence: event.presence } : m)));
        }
        this.members.value = next;
        return;
      }
      case "REQUESTED": {
        const list = this.requests.value.get(event.group) ?? [];
        if (list.some((r) => r.user === event.user)) return;
        const next = new Map(this.requests.value);
        next.set(event.group, [...list, { user: event.user, time: event.time, reason: event.reason }]);
        this.requests.value = next;
        return;
      }
      case "READ": {
        const c = this.conversation(event.conv);
        if (event.seq > c.read) {
          // Another device read this far: at most what is after it is unread.
          c.read = event.seq;
          c.unread = Math.min(c.unread, Math.max(0, c.latest - event.seq));
          this.touch();
        }
        return;
      }
      default:
        return;
    }
  }
}
