// The page's link against a fake WebSocket: what is sent again after a drop, what
// fails, when it signs out, and that it reconnects with backoff.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { type Credentials, Link, LinkError, type LinkStatus } from "../../src/app/link";

const HELLO_OK =
  "OK HELLO 1 baatkaro-server/0.1.0 features=files,file-cancel,tokens,account,read,group-state line=1024 payload=1048576 message=16384 reason=1024 file=4294967296 chunk=1048576 quota=17179869184 uploads=4 partial=86400 groups=256 members=10000 pending=1000 invites=1000 rate=1000 burst=10000 history=0 page=1000 inflight=1024 sessions=16 idle=300 expiry=604800 keys=604800 queue=8388608 login=60 key-count=1024 tokens=32 password=8 logins=60 per-address=256 frames=20000";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A WebSocket that records what the page sends and lets the test answer. */
class FakeSocket {
  binaryType = "blob";
  onopen: (() => void) | null = null;
  onmessage: ((m: { data: ArrayBuffer }) => void) | null = null;
  onclose: (() => void) | null = null;
  onerror: (() => void) | null = null;
  readonly sent: string[] = [];
  closed = false;
  send(bytes: Uint8Array) {
    this.sent.push(dec.decode(bytes));
  }
  close() {
    this.closed = true;
  }
  /** The server sends these lines (CRLF added), as one message. */
  reply(...lines: string[]) {
    const bytes = enc.encode(lines.map((l) => `${l}\r\n`).join(""));
    this.onmessage?.({ data: bytes.buffer as ArrayBuffer });
  }
  /** The tag of the n-th frame sent. */
  tag(n: number): string {
    return this.sent[n]!.split(" ")[0]!;
  }
}

const creds: Credentials = { user: "alice", token: 1, secret: "a".repeat(64) };

describe("the link", () => {
  let sockets: FakeSocket[];
  let statuses: LinkStatus[];
  let logins: boolean[];
  let link: Link;

  beforeEach(() => {
    vi.useFakeTimers();
    sockets = [];
    statuses = [];
    logins = [];
    link = new Link(
      "ws://127.0.0.1:7668/ws",
      { onEvent: () => {}, onStatus: (s) => statuses.push(s), onLoggedIn: (_, again) => void logins.push(again) },
      () => {
        const s = new FakeSocket();
        sockets.push(s);
        return s as unknown as WebSocket;
      },
    );
  });

  afterEach(() => {
    link.signOut();
    vi.useRealTimers();
  });

  /** Opens the n-th socket and answers its HELLO and AUTH. */
  function connect(n: number): FakeSocket {
    const s = sockets[n]!;
    s.onopen?.();
    expect(s.sent[0]).toMatch(/^c1 HELLO 1 /);
    expect(s.sent[1]).toBe(`c2 AUTH alice 1 ${"a".repeat(64)}\r\n`);
    s.reply(`c1 ${HELLO_OK}`, "c2 OK AUTH alice");
    return s;
  }

  it("logs in with the token and reports each login", async () => {
    link.start(creds);
    connect(0);
    await vi.waitFor(() => expect(logins).toEqual([false]));
    expect(statuses.at(-1)).toEqual({ state: "online" });
  });

  it("sends an idempotent request again after a drop, and fails one that is not", async () => {
    link.start(creds);
    const first = connect(0);
    await vi.waitFor(() => expect(logins.length).toBe(1));
    const send = link.call({ verb: "SEND", to: "#rust", key: "k1", text: "hi" });
    const create = link.call({ verb: "CREATE", group: "go" });
    expect(first.sent.slice(2).map((l) => l.split(" ")[1])).toEqual(["SEND", "CREATE"]);
    first.onclose?.();
    await expect(create).rejects.toMatchObject({ kind: "lost" });
    expect(statuses.at(-1)?.state).toBe("waiting");
    // Down: a new SEND waits, a CREATE fails at once.
    const queued = link.call({ verb: "SEND", to: "#rust", key: "k2", text: "later" });
    await expect(link.call({ verb: "CREATE", group: "x" })).rejects.toBeInstanceOf(LinkError);
    await vi.advanceTimersByTimeAsync(1_000);
    const second = connect(1);
    await vi.waitFor(() => expect(second.sent.length).toBe(4));
    // The same key, so the server stores it once (SPEC.md 5.2); then what waited.
    expect(second.sent[2]).toMatch(/^c3 SEND #rust k1 \{2\}\r\nhi\r\n$/);
    expect(second.sent[3]).toMatch(/^c4 SEND #rust k2 /);
    second.reply("c3 OK SEND #rust 7 1764072500000", "c4 OK SEND #rust 8 1764072500001");
    await expect(send).resolves.toMatchObject({ reply: { verb: "SEND", seq: 7 } });
    await expect(queued).resolves.toMatchObject({ reply: { verb: "SEND", seq: 8 } });
    expect(logins).toEqual([false, true]);
  });

  it("signs out when the token is refused, and does not retry", async () => {
    link.start(creds);
    const s = sockets[0]!;
    s.onopen?.();
    s.reply(`c1 ${HELLO_OK}`, "c2 ERR AUTH_FAILED :token refused: unknown, revoked or expired");
    expect(statuses.at(-1)).toMatchObject({ state: "signed-out" });
    await vi.advanceTimersByTimeAsync(120_000);
    expect(sockets.length).toBe(1);
  });

  it("after a BYE REVOKED, asks again, and signs out only if its own token is gone", async () => {
    link.start(creds);
    const s = connect(0);
    await vi.waitFor(() => expect(logins.length).toBe(1));
    s.reply("* BYE REVOKED :this session's token was revoked");
    expect(statuses.at(-1)?.state).toBe("waiting");
    await vi.advanceTimersByTimeAsync(1_000);
    const again = sockets[1]!;
    again.onopen?.();
    again.reply(`c1 ${HELLO_OK}`, "c2 ERR AUTH_FAILED :token refused: unknown, revoked or expired");
    expect(statuses.at(-1)).toMatchObject({ state: "signed-out" });
  });

  it("never sends again what is not idempotent after a BYE", async () => {
    link.start(creds);
    const first = connect(0);
    await vi.waitFor(() => expect(logins.length).toBe(1));
    const offer = link.call({ verb: "FILE-OFFER", to: "#g", size: 1, sha256: "a".repeat(64), name: "f" });
    const kick = link.call({ verb: "KICK", group: "g", user: "bob" });
    const members = link.call({ verb: "MEMBERS", group: "g" });
    first.reply("* BYE SLOW_CONSUMER :you were not reading");
    await expect(offer).rejects.toMatchObject({ kind: "lost" });
    await expect(kick).rejects.toMatchObject({ kind: "lost" });
    await vi.advanceTimersByTimeAsync(1_000);
    const second = connect(1);
    await vi.waitFor(() => expect(second.sent.length).toBe(3));
    expect(second.sent[2]).toBe("c3 MEMBERS g\r\n");
    second.reply("c3 OK MEMBERS 0");
    await expect(members).resolves.toMatchObject({ reply: { verb: "MEMBERS" } });
  });

  it("pings a link it only listens on, before the server's idle time runs out", async () => {
    link.start(creds);
    const s = connect(0);
    await vi.waitFor(() => expect(logins.length).toBe(1));
    // Events arrive all the time; the page sends nothing of its own.
    for (let t = 0; t < 120; t++) {
      s.reply(`* PRESENCE bob ${t % 2 ? "online" : "offline"}`);
      await vi.advanceTimersByTimeAsync(1_000);
    }
    // idle=300: a PING at least every 100 s.
    expect(s.sent.some((l) => / PING\r\n$/.test(l))).toBe(true);
  });

  it("notices a dead link even while the person keeps sending", async () => {
    link.start(creds);
    const s = connect(0);
    await vi.waitFor(() => expect(logins.length).toBe(1));
    // The server has gone silent; the page sends every 10 s and hears nothing.
    for (let t = 0; t < 20; t++) {
      void link.call({ verb: "SEND", to: "#g", key: `k${t}`, text: "anyone?" }).catch(() => {});
      await vi.advanceTimersByTimeAsync(10_000);
    }
    expect(s.sent.some((l) => / PING\r\n$/.test(l))).toBe(true);
    expect(statuses.at(-1)?.state).not.toBe("online");
  });

  it("takes a stream it cannot read for a dropped link", async () => {
    link.start(creds);
    const s = connect(0);
    await vi.waitFor(() => expect(logins.length).toBe(1));
    // A payload that does not end in CRLF: nothing after it can be trusted.
    s.reply("* MSG #g 1 5 bob {2}", "hiXX");
    expect(statuses.at(-1)?.state).toBe("waiting");
  });

  it("waits longer after each failed try, honouring the server's hint", async () => {
    link.start(creds);
    const s = connect(0);
    await vi.waitFor(() => expect(logins.length).toBe(1));
    s.reply("* BYE SHUTTING_DOWN retry=5000 :restarting");
    const waiting = statuses.at(-1);
    expect(waiting?.state).toBe("waiting");
    const wait = waiting?.state === "waiting" ? waiting.retryAt - Date.now() : 0;
    expect(wait).toBeGreaterThanOrEqual(5000);
    expect(wait).toBeLessThanOrEqual(5000 + 1000);
    await vi.advanceTimersByTimeAsync(wait);
    expect(sockets.length).toBe(2);
    // The next try fails too: the wait doubles (with jitter, at least half of it).
    sockets[1]!.onclose?.();
    const next = statuses.at(-1);
    const wait2 = next?.state === "waiting" ? next.retryAt - Date.now() : 0;
    expect(wait2).toBeGreaterThanOrEqual(1000);
    expect(wait2).toBeLessThanOrEqual(4000);
  });
});

describe("secrets over plain text beyond loopback (SPEC.md 11.7)", () => {
  function linkTo(url: string): { link: Link; sockets: FakeSocket[] } {
    const sockets: FakeSocket[] = [];
    const link = new Link(url, { onEvent: () => {}, onStatus: () => {}, onLoggedIn: () => {} }, () => {
      const s = new FakeSocket();
      sockets.push(s);
      return s as unknown as WebSocket;
    });
    return { link, sockets };
  }

  it("are not sent until the user allows it: no connection is even opened", async () => {
    const { link, sockets } = linkTo("ws://chat.example:7668/ws");
    expect(link.inClear).toBe(true);
    await expect(link.signIn("alice", "pw-alice-secret", false, "test")).rejects.toThrow(/without encryption/);
    link.start(creds);
    expect(sockets).toHaveLength(0);
    link.signOut();
  });

  it("are sent once allowed", () => {
    const { link, sockets } = linkTo("ws://chat.example:7668/ws");
    link.allowInClear(true);
    link.start(creds);
    expect(sockets).toHaveLength(1);
    sockets[0]!.onopen?.();
    expect(sockets[0]!.sent[1]).toMatch(/^c2 AUTH alice 1 /);
    link.signOut();
  });

  it("need no permission over TLS or on loopback", () => {
    for (const url of ["wss://chat.example/ws", "ws://127.0.0.1:7668/ws", "ws://localhost:7668/ws", "ws://[::1]:7668/ws"]) {
      const { link, sockets } = linkTo(url);
      expect(link.inClear, url).toBe(false);
      link.start(creds);
      expect(sockets, url).toHaveLength(1);
      link.signOut();
    }
  });
});
