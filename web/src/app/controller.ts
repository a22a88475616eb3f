/**
 * The page's one controller: it owns the {@link Link} and the {@link State}, turns
 * what the person does into requests, and what the server sends into state.
 *
 * The session token lives in `localStorage` (never the password, SPEC.md 12.3) and
 * in a `SameSite=Strict` cookie scoped to `/files`, which the server's download
 * endpoint reads so that downloads go to the browser's own download manager.
 */

import { signal } from "@preact/signals";

import { type ServerInfo, isStored } from "../proto/session";
import type { Command, Conv, Event, JoinRule, Name, OkReply, StoredEvent } from "../proto/types";
import { type Credentials, type Done, Link, LinkError, socketUrl } from "./link";
import { mentions } from "./mention";
import { State, pageHidden } from "./state";
import { type Progress, upload } from "./upload";

/** An upload the page shows. */
export interface Upload {
  readonly id: number;
  readonly name: string;
  readonly conv: Conv;
  readonly progress: Progress;
}

/** Where the token is kept. */
const SESSION_KEY = "baatkaro.session";

/** The most events one HISTORY page asks for (the server's `page` may be lower). */
export const PAGE = 200;

/** How long reading waits before it tells the server (one READ for a burst). */
const READ_DELAY_MS = 1_000;

/** A random idempotency key for a SEND (SPEC.md 5.2). */
export function newKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The group of a group conversation. */
/** Where the permission to send secrets in plain text to a host is kept. */
const CLEAR_KEY = "baatkaro.allow-clear";

/** The group of a group conversation. */
export function groupOf(conv: Conv | undefined): Name | undefined {
  return conv?.startsWith("#") ? conv.slice(1) : undefined;
}

export class Controller {
  readonly state = new State();
  readonly link: Link;
  /** Uploads under way or just finished. */
  readonly uploads = signal<readonly Upload[]>([]);
  private nextUpload = 1;
  private readonly marks = new Map<Conv, number>();
  private readTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(url: string = socketUrl()) {
    this.link = new Link(url, {
      onEvent: (e) => this.onEvent(e),
      onStatus: (s) => {
        this.state.status.value = s;
        if (s.state === "signed-out" && s.reason) this.forget(s.reason);
      },
      onLoggedIn: (info, again) => this.catchUp(info, again),
    });
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) return;
      // Back on the page: what is shown now counts as read, and a link that was
      // waiting to reconnect tries at once.
      this.link.reconnectNow();
      const conv = this.state.current.value;
      if (conv) this.readUpTo(conv);
    });
    window.addEventListener("online", () => this.link.reconnectNow());
    if (localStorage.getItem(CLEAR_KEY) === location.host) this.link.allowInClear(true);
  }

  /**
   * The user's explicit permission to send the password and session token to this
   * server although the page reaches it without encryption (SPEC.md 11.7); kept for
   * this host, so that a reload may log in with the token.
   */
  allowInClear(): void {
    localStorage.setItem(CLEAR_KEY, location.host);
    this.link.allowInClear(true);
  }

  /** Whether the password would go unencrypted and the user has not allowed it. */
  get needsClearConsent(): boolean {
    return this.link.inClear && localStorage.getItem(CLEAR_KEY) !== location.host;
  }

  /** Logs in with the token kept from before, if there is one. */
  boot(): void {
    const kept = load();
    // Without the user's permission the token is not sent in clear: the login
    // form asks for it (and a password).
    if (!kept || this.needsClearConsent) return;
    this.state.me.value = kept.user;
    setCookie(kept);
    this.link.start(kept);
  }

  /** Logs in (or registers) with a password; keeps the token it gives. */
  async signIn(user: string, password: string, register: boolean): Promise<void> {
    const creds = await this.link.signIn(user, password, register, deviceLabel());
    save(creds);
    setCookie(creds);
    this.state.me.value = creds.user;
    this.link.start(creds);
  }

  /** Logs out everywhere this token reaches, and forgets it. */
  async logout(): Promise<void> {
    try {
      await this.link.logout(true);
    } catch {
      // Signed out either way: the token is forgotten below.
    }
    this.forget();
  }

  private forget(reason?: string): void {
    localStorage.removeItem(SESSION_KEY);
    document.cookie = "baatkaro-token=; Path=/files; Max-Age=0; SameSite=Strict";
    this.state.me.value = undefined;
    this.state.current.value = undefined;
    this.state.conversations.clear();
    this.state.groups.value = [];
    this.state.touch();
    if (reason) this.state.notify(reason, "error");
  }

  /** Sends `command`; a refusal is shown to the person and rethrown. */
  async run(command: Command): Promise<Done> {
    try {
      return await this.link.call(command);
    } catch (e) {
      const message = e instanceof LinkError ? e.message : String(e);
      this.state.notify(`${command.verb.toLowerCase()}: ${message}`, "error");
      throw e;
    }
  }

  /** Sends `command` for its effect; false if it was refused (and shown). */
  async act(command: Command): Promise<boolean> {
    try {
      await this.run(command);
      return true;
    } catch {
      return false;
    }
  }

  private has(feature: string): boolean {
    return this.link.server?.features.includes(feature) ?? false;
  }

  /** After every login: the lists, the markers, and where the person was. */
  private async catchUp(info: ServerInfo, again: boolean): Promise<void> {
    this.state.server.value = info;
    const me = this.state.me.value;
    let current = this.state.current.value;
    if (!again && !current && me) {
      current = (localStorage.getItem(`baatkaro.where.${me}`) as Conv | null) ?? undefined;
    }
    // The newest page of where the person is goes with the lists, not after them:
    // it is what the page shows first.
    const newest = current ? this.loadNewest(current) : undefined;
    const before = this.state.current.value;
    const [, listed] = await Promise.all([this.refreshGroups(), this.refreshConversations(), newest]);
    // Still readable? The lists say (kicked, banned or deleted while away: not).
    const group = groupOf(current);
    // A private conversation is listed only once it has an event; one opened and
    // still empty (or whose first message is on its way) stays.
    const empty = current !== undefined && (this.state.conversations.get(current)?.latest ?? 0) === 0;
    const readable =
      current !== undefined && (group ? this.state.roleIn(group) !== undefined : listed.has(current) || empty);
    // The person may have opened another conversation meanwhile: that one stays.
    if (this.state.current.value === before) {
      if (current && readable) {
        await this.select(current);
      } else {
        if (current) this.state.conversations.delete(current);
        this.state.current.value = undefined;
        this.state.touch();
      }
    }
    if (again) this.state.notify("reconnected", "info");
  }

  /** Loads the newest page of `conv` (where its history ends is not known yet). */
  async loadNewest(conv: Conv): Promise<void> {
    const c = this.state.conversation(conv);
    const limit = Math.min(PAGE, this.link.server?.limits.page ?? PAGE);
    try {
      const done = await this.link.call({ verb: "HISTORY", conv, range: "last", limit });
      for (const item of done.items) if (isStored(item)) c.add(item);
      if (done.reply.verb === "HISTORY") {
        c.latest = Math.max(c.latest, done.reply.latest);
        c.oldest = done.reply.oldest;
      }
      this.state.touch();
    } catch {
      // Not readable (left, deleted): the lists say so.
    }
  }

  async refreshGroups(): Promise<void> {
    const done = await this.link.call({ verb: "GROUPS", offers: this.has("group-state") || undefined });
    this.state.setGroups(done.items);
  }

  /** The conversations and their markers; resolves with the ones listed. */
  async refreshConversations(): Promise<Set<Conv>> {
    const done = await this.link.call({ verb: "CONVERSATIONS", read: this.has("read") || undefined });
    this.state.setConversations(done.items);
    return new Set(done.items.flatMap((i) => (i.verb === "CONV" ? [i.conv] : [])));
  }

  /** Opens a conversation: marks it read, loads its members (and requests). */
  async select(conv: Conv): Promise<void> {
    const c = this.state.conversation(conv);
    if (this.state.current.value !== conv) {
      // Where the person left off, for the "new messages" line and to open there,
      // before reading moves it.
      c.openedAt = c.unread > 0 ? c.read : undefined;
    }
    this.state.current.value = conv;
    const me = this.state.me.value;
    if (me) localStorage.setItem(`baatkaro.where.${me}`, conv);
    this.state.touch();
    this.readUpTo(conv);
    const group = groupOf(conv);
    if (group && this.state.roleIn(group)) await this.refreshGroupDetail(group);
  }

  /** Members, and the pending requests for the owner and admins. */
  async refreshGroupDetail(group: Name): Promise<void> {
    const members = await this.link.call({ verb: "MEMBERS", group }).catch(() => undefined);
    if (members) this.state.setMembers(group, members.items);
    const role = this.state.roleIn(group);
    if (role === "owner" || role === "admin") {
      const requests = await this.link.call({ verb: "REQUESTS", group }).catch(() => undefined);
      if (requests) this.state.setRequests(group, requests.items);
    }
  }

  /** Loads the events `from` to `to` of `conv` (a page at most) unless loaded. */
  async load(conv: Conv, from: number, to: number): Promise<void> {
    const c = this.state.conversation(conv);
    const page = Math.min(PAGE, this.link.server?.limits.page ?? PAGE);
    const start = Math.max(c.oldest, from);
    const end = Math.min(to, start + page - 1);
    if (end < start || c.loading.has(start)) return;
    c.loading.add(start);
    try {
      const done = await this.link.call({ verb: "HISTORY", conv, range: { after: start - 1 }, limit: end - start + 1 });
      for (const item of done.items) if (isStored(item)) c.add(item);
      if (done.reply.verb === "HISTORY") {
        c.latest = Math.max(c.latest, done.reply.latest);
        c.oldest = done.reply.oldest;
      }
      this.state.touch();
    } catch (e) {
      if (!(e instanceof LinkError && e.kind === "closed")) {
        this.state.notify(`history: ${e instanceof Error ? e.message : String(e)}`, "error");
      }
    } finally {
      c.loading.delete(start);
    }
  }

  /** The person has seen `conv` up to its newest event: tell the server, soon. */
  readUpTo(conv: Conv): void {
    // A hidden tab reads nothing: what arrives there stays unread, on every device.
    if (pageHidden()) return;
    const c = this.state.conversation(conv);
    c.unread = 0;
    c.more = false;
    if (!this.has("read") || c.latest <= c.read) return;
    c.read = c.latest;
    this.marks.set(conv, c.latest);
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => this.flushReads(), READ_DELAY_MS);
  }

  private flushReads(): void {
    const marks = [...this.marks];
    this.marks.clear();
    for (const [conv, seq] of marks) void this.link.call({ verb: "READ", conv, seq }).catch(() => {});
  }

  /** Sends a message to `to`. */
  async send(to: Conv, text: string): Promise<boolean> {
    return this.act({ verb: "SEND", to, key: newKey(), text });
  }

  /** Shares `file` in `conv`, showing its progress; false if it failed (and why is shown). */
  async share(conv: Conv, file: File): Promise<boolean> {
    const id = this.nextUpload++;
    const set = (progress: Progress) => {
      const rest = this.uploads.value.filter((u) => u.id !== id);
      this.uploads.value = [...rest, { id, name: file.name, conv, progress }];
    };
    const chunk = this.link.server?.limits.chunk ?? 1024 * 1024;
    try {
      await upload((c) => this.link.call(c), conv, file, chunk, set);
      setTimeout(() => (this.uploads.value = this.uploads.value.filter((u) => u.id !== id)), 4_000);
      return true;
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      set({ phase: "failed", done: 0, size: file.size, error: why });
      this.state.notify(`${file.name}: ${why} (pick the same file again to resume)`, "error");
      return false;
    }
  }

  /** The files shared in `conv`. */
  async files(conv: Conv): Promise<StoredEvent[]> {
    const done = await this.run({ verb: "FILES", conv });
    return done.items.filter(isStored);
  }

  /** Creates a group and opens it. */
  async create(group: Name, rule: JoinRule): Promise<boolean> {
    if (!(await this.act({ verb: "CREATE", group, rule }))) return false;
    await this.refreshGroups();
    await this.select(`#${group}`);
    return true;
  }

  /** Asks to join a group (or joins an open one). */
  async join(group: Name, reason?: string): Promise<boolean> {
    let done;
    try {
      done = await this.run({ verb: "JOIN", group, reason: reason || undefined });
    } catch {
      return false;
    }
    await this.refreshGroups();
    const reply = done.reply as Extract<OkReply, { verb: "JOIN" }>;
    if (reply.outcome === "joined") await this.select(`#${group}`);
    else this.state.notify(`asked to join ${group}: waiting for an owner or admin`);
    return true;
  }

  /** A membership command on `group`, then the lists again. */
  async groupAction(command: Command & { group: Name }): Promise<boolean> {
    const ok = await this.act(command);
    if (ok) {
      await this.refreshGroups();
      if (command.verb === "APPROVE" || command.verb === "REJECT") {
        this.state.dropRequest(command.group, command.user);
      }
      if (this.state.roleIn(command.group)) await this.refreshGroupDetail(command.group);
      const gone = command.verb === "LEAVE" || command.verb === "DELETE";
      if (gone && groupOf(this.state.current.value) === command.group) this.state.current.value = undefined;
    }
    return ok;
  }

  private onEvent(event: Exclude<Event, { verb: "BYE" }>): void {
    const s = this.state;
    const me = s.me.value;
    if (isStored(event)) {
      const reading = event.conv === s.current.value && !document.hidden;
      const unread = s.stored(event, reading);
      if (reading) this.readUpTo(event.conv);
      if (unread && document.hidden) this.alert(event);
      const group = groupOf(event.conv);
      if (group && event.verb !== "MSG" && event.verb !== "FILE") {
        // Membership and group changes: the lists say who is who now.
        void this.refreshGroups().catch(() => {});
        if (s.members.value.has(group)) void this.refreshGroupDetail(group).catch(() => {});
        const mine = "user" in event && event.user === me;
        if (mine && (event.verb === "KICKED" || event.verb === "BANNED")) {
          s.notify(`you were removed from ${group} by ${event.by}`, "error");
        }
      }
      return;
    }
    switch (event.verb) {
      case "INVITED":
        s.notify(`${event.by} invites you to ${event.group}`);
        void this.refreshGroups().catch(() => {});
        return;
      case "APPROVED":
        s.notify(`${event.by} let you into ${event.group}`);
        void this.refreshGroups().catch(() => {});
        return;
      case "REJECTED":
        s.notify(`your request to join ${event.group} was declined`, "error");
        void this.refreshGroups().catch(() => {});
        return;
      case "DELETED":
        s.notify(`${event.by} deleted the group ${event.group}`, "error");
        s.conversations.delete(`#${event.group}`);
        if (s.current.value === `#${event.group}`) s.current.value = undefined;
        void this.refreshGroups().catch(() => {});
        return;
      case "REQUESTED":
        s.apply(event);
        s.notify(`${event.user} asks to join ${event.group}`);
        return;
      case "ERR":
        s.notify(`the server says: ${event.failure.code.toLowerCase().replaceAll("_", " ")}`, "error");
        return;
      default:
        s.apply(event);
    }
  }

  /** A desktop notification for a mention or a private message, if allowed. */
  private alert(event: StoredEvent): void {
    if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
    if (event.verb !== "MSG" && event.verb !== "FILE") return;
    const text = event.verb === "MSG" ? event.text : `shared ${event.name}`;
    const private_ = event.conv.startsWith("@");
    if (!private_ && !mentions(text, this.state.me.value)) return;
    const n = new Notification(private_ ? event.from : `${event.from} in ${event.conv}`, {
      body: text.slice(0, 200),
      tag: event.conv,
    });
    n.onclick = () => {
      window.focus();
      void this.select(event.conv);
    };
  }
}

/** A label for the token, naming the browser (SPEC.md 4.7: at most 64 octets). */
function deviceLabel(): string {
  const ua = navigator.userAgent;
  const browser = /Firefox\/\d+/.exec(ua)?.[0] ?? /Chrom(e|ium)\/\d+/.exec(ua)?.[0] ?? "browser";
  return `web ${browser}`.slice(0, 60);
}

function save(creds: Credentials): void {
  localStorage.setItem(SESSION_KEY, JSON.stringify(creds));
}

function load(): Credentials | undefined {
  try {
    const v = JSON.parse(localStorage.getItem(SESSION_KEY) ?? "null") as Partial<Credentials> | null;
    if (v && typeof v.user === "string" && typeof v.token === "number" && typeof v.secret === "string") {
      return { user: v.user, token: v.token, secret: v.secret };
    }
  } catch {
    // A damaged entry is as good as none.
  }
  return undefined;
}

/** The cookie the download endpoint reads (SPEC.md 12.4). */
function setCookie(creds: Credentials): void {
  const secure = location.protocol === "https:" ? "; Secure" : "";
  // SPEC.md 12.4's http-token: the three fields of AUTH joined by dots.
  const value = `${creds.user}.${creds.token}.${creds.secret}`;
  document.cookie = `baatkaro-token=${value}; Path=/files; SameSite=Strict${secure}`;
}
