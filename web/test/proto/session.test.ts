// The client session: tags, pipelining, routing of replies, items and events, the
// bound on one answer, the HELLO reply's effects and the end of a connection.
import { describe, expect, it } from "vitest";

import {
  type Answer,
  ClientSession,
  type Command,
  EncodeError,
  type ServerFrame,
  SessionError,
  type SessionOutput,
} from "../../src/proto";
import { encodeServerFrame } from "../../src/proto/testing/serverEncode";
import { concat } from "./spec";

const ascii = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

const HELLO_OK =
  "OK HELLO 1 baatkaro-server/0.1.0 features=files,file-cancel,tokens,account,read,group-state line=1024 payload=1048576 message=16384 reason=1024 file=4294967296 chunk=1048576 quota=17179869184 uploads=4 partial=86400 groups=256 members=10000 pending=1000 invites=1000 rate=1000 burst=10000 history=0 page=1000 inflight=1024 sessions=16 idle=300 expiry=604800 keys=604800 queue=8388608 login=60 key-count=1024 tokens=32 password=8 logins=60 per-address=256 frames=20000";

/** A session past HELLO and LOGIN (as alice), with the server's full feature set. */
function loggedIn(hello = HELLO_OK): ClientSession {
  const s = new ClientSession();
  const h = s.send({ verb: "HELLO", versions: [1] });
  const l = s.send({ verb: "LOGIN", user: "alice", password: "pw-alice-1" });
  const out = s.receive(ascii(`${h.tag} ${hello}\r\n${l.tag} OK LOGIN alice\r\n`));
  expect(out.map((o) => o.kind)).toEqual(["answer", "answer"]);
  expect(s.state).toBe("loggedIn");
  return s;
}

function answers(out: SessionOutput[]): Answer[] {
  return out.filter((o): o is Answer => o.kind === "answer");
}

describe("the client session", () => {
  it("tags requests c1, c2, … and encodes them, payload and all", () => {
    const s = new ClientSession();
    const a = s.send({ verb: "HELLO", versions: [1], software: "baatkaro-web/0.1.0" });
    const b = s.send({ verb: "PING" });
    expect([a.tag, b.tag]).toEqual(["c1", "c2"]);
    expect(text(a.bytes)).toBe("c1 HELLO 1 baatkaro-web/0.1.0\r\n");
    expect(text(b.bytes)).toBe("c2 PING\r\n");
    const s2 = loggedIn();
    expect(text(s2.send({ verb: "SEND", to: "#rust", key: "k-1", text: "hello there" }).bytes)).toBe(
      "c3 SEND #rust k-1 {11}\r\nhello there\r\n",
    );
  });

  it("routes interleaved items, replies and events to whom they belong, in order, across any split", () => {
    const server = ascii(
      [
        "c3 GROUP rust owner approval 3 42",
        "* PRESENCE bob online",
        "c3 GROUP go invited open 12 0",
        "* MSG #rust 43 1764072500000 bob {5}",
        "hello",
        "c3 OK GROUPS 2",
        "c4 MSG @bob 6 1764072300000 bob {3}",
        "hi!",
        "* READ #rust 43",
        "c4 OK HISTORY @bob 7 1",
        "c5 ERR RATE_LIMITED retry=250 :rate limit exceeded",
        "",
      ].join("\r\n"),
    );
    const run = (pieces: Uint8Array[]) => {
      const s = loggedIn();
      expect(s.send({ verb: "GROUPS" }).tag).toBe("c3");
      expect(s.send({ verb: "HISTORY", conv: "@bob", range: "last", limit: 2 }).tag).toBe("c4");
      expect(s.send({ verb: "SEND", to: "#rust", key: "k", text: "x" }).tag).toBe("c5");
      return { out: pieces.flatMap((p) => s.receive(p)), s };
    };
    const { out, s } = run([server]);
    expect(out.map((o) => (o.kind === "answer" ? `answer ${o.tag} ${o.items.length}` : `${o.kind}`))).toEqual([
      "event",
      "event",
      "answer c3 2",
      "event",
      "answer c4 1",
      "answer c5 0",
    ]);
    const [groups, history, send] = answers(out);
    expect(groups).toMatchObject({ ok: true, verb: "GROUPS", reply: { verb: "GROUPS", count: 2 } });
    expect(groups!.items.map((i) => i.verb === "GROUP" && i.group)).toEqual(["rust", "go"]);
    expect(history).toMatchObject({ ok: true, reply: { verb: "HISTORY", latest: 7, oldest: 1 }, items: [{ verb: "MSG", text: "hi!" }] });
    expect(send).toMatchObject({ ok: false, verb: "SEND", error: { kind: "refused", failure: { code: "RATE_LIMITED", retryMs: 250 } } });
    expect(s.waiting).toBe(0);
    // The newest seq seen of each conversation: from events and items alike.
    expect([...s.seen]).toEqual([["#rust", 43], ["@bob", 6]]);
    for (let i = 0; i <= server.length; i += 7) {
      expect(run([server.slice(0, i), server.slice(i)]).out, `split at ${i}`).toEqual(out);
    }
  });

  it("an answer over the cap fails alone; the requests around it and the session go on", () => {
    const s = new ClientSession({ maxAnswerBytes: 1000 });
    s.send({ verb: "HELLO", versions: [1] });
    s.send({ verb: "LOGIN", user: "alice", password: "pw-alice-1" });
    s.receive(ascii(`c1 ${HELLO_OK}\r\nc2 OK LOGIN alice\r\n`));
    const before = s.send({ verb: "PING" });
    const big = s.send({ verb: "FILE-GET", file: "f1", offset: 0, length: 0 });
    const after = s.send({ verb: "FILES", conv: "#rust" });
    const frames: ServerFrame[] = [{ kind: "ok", tag: before.tag, reply: { verb: "PING" } }];
    for (let i = 0; i < 10; i++) {
      frames.push({ kind: "item", tag: big.tag, item: { verb: "CHUNK", file: "f1", offset: i * 200, data: new Uint8Array(200) } });
      frames.push({ kind: "event", event: { verb: "PRESENCE", user: "bob", presence: i % 2 ? "online" : "offline" } });
    }
    frames.push({ kind: "ok", tag: big.tag, reply: { verb: "FILE-GET", file: "f1", offset: 0, length: 2000 } });
    frames.push({
      kind: "item",
      tag: after.tag,
      item: { verb: "FILE", conv: "#rust", seq: 44, time: 1, from: "alice", file: "f1", size: 2000, sha256: "ab".repeat(32), name: "notes.txt" },
    });
    frames.push({ kind: "ok", tag: after.tag, reply: { verb: "FILES", count: 1 } });
    const out = s.receive(concat(...frames.map(encodeServerFrame)));
    expect(out.filter((o) => o.kind === "event")).toHaveLength(10);
    const [a, b, c] = answers(out);
    expect(a).toMatchObject({ tag: before.tag, ok: true });
    expect(b).toMatchObject({ tag: big.tag, ok: false, items: [], error: { kind: "too-large", limit: 1000 } });
    expect(c).toMatchObject({ tag: after.tag, ok: true, items: [{ verb: "FILE", name: "notes.txt" }] });
    expect(s.state).toBe("loggedIn");
    const ping = s.send({ verb: "PING" });
    expect(answers(s.receive(ascii(`${ping.tag} OK PING\r\n`)))).toMatchObject([{ tag: ping.tag, ok: true }]);
  });

  it("HELLO's limit applies to the frames after its reply in the same message", () => {
    const s = new ClientSession();
    const h = s.send({ verb: "HELLO", versions: [1] });
    const l = s.send({ verb: "LOGIN", user: "alice", password: "pw-alice-1" });
    const g = s.send({ verb: "FILE-GET", file: "f1", offset: 0, length: 0 });
    const long = "x".repeat(70_000); // over the 65,536 before HELLO, within its 1,048,576
    const out = s.receive(
      ascii(`${h.tag} ${HELLO_OK}\r\n${l.tag} OK LOGIN alice\r\n${g.tag} CHUNK f1 0 {70000}\r\n${long}\r\n${g.tag} OK FILE-GET f1 0 70000\r\n`),
    );
    expect(answers(out).map((a) => a.ok)).toEqual([true, true, true]);
    expect(answers(out)[2]!.items).toMatchObject([{ verb: "CHUNK", data: ascii(long) }]);
    expect(s.server).toMatchObject({ version: 1, software: "baatkaro-server/0.1.0", limits: { message: 16384, password: 8 } });
    expect(s.user).toBe("alice");
    // The WebSocket binding's bound on a message: 65,536 + line + payload.
    expect(s.maxMessage).toBe(1_115_136);
    expect(new ClientSession().maxMessage).toBe(65_536 + 1024 + 65_536);
  });

  it("before HELLO's reply, payloads are held to 65,536 octets", () => {
    const s = new ClientSession();
    s.send({ verb: "HELLO", versions: [1] });
    expect(() => s.send({ verb: "LOGIN", user: "alice", password: "p".repeat(1025) })).toThrow(EncodeError);
    const out = s.receive(ascii("* MSG #rust 1 5 bob {70000}\r\n"));
    expect(out).toMatchObject([{ kind: "unreadable", error: { code: "PAYLOAD_TOO_LARGE" } }]);
  });

  it("judges each request in the state the ones before it lead to", () => {
    const s = new ClientSession();
    const refused = (c: Command, reason: string) => {
      const e = (() => {
        try {
          s.send(c);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(e, `${c.verb}`).toBeInstanceOf(SessionError);
      expect((e as SessionError).reason).toBe(reason);
    };
    refused({ verb: "GROUPS" }, "wrong-state");
    refused({ verb: "LOGIN", user: "alice", password: "x" }, "wrong-state");
    s.send({ verb: "PING" });
    const h = s.send({ verb: "HELLO", versions: [1] });
    expect(s.expectedState).toBe("authenticating");
    refused({ verb: "HELLO", versions: [1] }, "wrong-state");
    refused({ verb: "GROUPS" }, "wrong-state");
    // Pipelined: the server reads nothing past a LOGIN until it has answered it.
    const l = s.send({ verb: "LOGIN", user: "alice", password: "wrong-pw" });
    const g = s.send({ verb: "GROUPS" });
    expect(s.expectedState).toBe("loggedIn");
    refused({ verb: "AUTH", user: "alice", token: 1, secret: "0".repeat(64) }, "wrong-state");
    // The login fails: the state is authenticating again, and a new attempt may go.
    const out = s.receive(
      ascii(`c1 OK PING\r\n${h.tag} ${HELLO_OK}\r\n${l.tag} ERR AUTH_FAILED :unknown user or wrong password\r\n${g.tag} ERR AUTH_REQUIRED\r\n`),
    );
    expect(answers(out).map((a) => a.ok)).toEqual([true, true, false, false]);
    expect([s.state, s.expectedState]).toEqual(["authenticating", "authenticating"]);
    refused({ verb: "GROUPS" }, "wrong-state");
    s.send({ verb: "LOGIN", user: "alice", password: "pw-alice-1" });
    s.send({ verb: "LOGOUT" });
    refused({ verb: "PING" }, "wrong-state");
  });

  it("refuses a command of a feature the server did not announce, once it has said", () => {
    const bare = HELLO_OK.replace("features=files,file-cancel,tokens,account,read,group-state ", "");
    const s = loggedIn(bare);
    for (const c of [
      { verb: "READ", conv: "#rust", seq: 5 },
      { verb: "CONVERSATIONS", read: true },
      { verb: "GROUPS", offers: true },
      { verb: "BANS", group: "rust" },
      { verb: "TOKEN", label: "laptop" },
      { verb: "LOGOUT", revoke: true },
      { verb: "FILE-GET", file: "f", offset: 0, length: 0 },
    ] as Command[]) {
      expect(() => s.send(c), c.verb).toThrow(SessionError);
    }
    expect(s.send({ verb: "CONVERSATIONS" }).tag).toBe("c3");
    expect(s.send({ verb: "GROUPS" }).tag).toBe("c4");
    expect(loggedIn().send({ verb: "READ", conv: "#rust", seq: 5 }).tag).toBe("c3");
  });

  it("refuses what the server's limits rule out", () => {
    const s = loggedIn();
    const code = (c: Command) => {
      try {
        s.send(c);
      } catch (e) {
        return e instanceof EncodeError ? e.code : "other";
      }
      return "sent";
    };
    expect(code({ verb: "SEND", to: "#rust", key: "k", text: "é".repeat(8192) })).toBe("sent");
    expect(code({ verb: "SEND", to: "#rust", key: "k", text: "é".repeat(8193) })).toBe("TEXT_TOO_LONG");
    expect(code({ verb: "JOIN", group: "go", reason: "r".repeat(1025) })).toBe("TEXT_TOO_LONG");
    expect(code({ verb: "TOKEN", label: "l".repeat(65) })).toBe("TEXT_TOO_LONG");
    expect(code({ verb: "PASSWORD", old: "x", new: "short" })).toBe("PASSWORD_TOO_SHORT");
    expect(code({ verb: "FILE-OFFER", to: "#rust", size: 4294967297, sha256: "a".repeat(64), name: "big.iso" })).toBe("FILE_TOO_LARGE");
    expect(code({ verb: "FILE-CHUNK", file: "f", offset: 0, data: new Uint8Array(1048577) })).toBe("PAYLOAD_TOO_LARGE");
    // Nothing refused took a tag.
    expect(s.send({ verb: "PING" }).tag).toBe("c4");
  });

  it("a frame it cannot read fails the request it names, or is reported, and later frames of that request are dropped", () => {
    const s = loggedIn();
    const g = s.send({ verb: "GROUPS" });
    const p = s.send({ verb: "PING" });
    const out = s.receive(
      ascii(`${g.tag} WIDGET 7\r\n* SPARKLE now\r\n${g.tag} GROUP rust owner open 1 1\r\n${g.tag} OK GROUPS 2\r\n${p.tag} OK GROUPS 0\r\nc99 OK PING\r\n`),
    );
    expect(out).toMatchObject([
      { kind: "answer", tag: g.tag, ok: false, error: { kind: "undecodable", error: { code: "UNKNOWN_COMMAND" } } },
      { kind: "unreadable", error: { code: "UNKNOWN_COMMAND" } },
      { kind: "answer", tag: p.tag, ok: false, error: { kind: "mismatched", reply: { verb: "GROUPS" } } },
    ]);
    expect(out).toHaveLength(3);
  });

  it("BYE ends the connection and names the requests left unanswered", () => {
    const s = loggedIn();
    const a = s.send({ verb: "GROUPS" });
    const b = s.send({ verb: "PING" });
    const out = s.receive(ascii(`${a.tag} OK GROUPS 0\r\n* BYE SHUTTING_DOWN retry=5000 :server shutting down\r\n${b.tag} OK PING\r\n`));
    expect(out).toMatchObject([
      { kind: "answer", tag: a.tag },
      { kind: "closed", reason: { why: "bye", failure: { code: "SHUTTING_DOWN", retryMs: 5000 } }, unanswered: [b.tag] },
    ]);
    expect(s.state).toBe("closed");
    expect(s.receive(ascii(`${b.tag} OK PING\r\n`))).toEqual([]);
    expect(() => s.send({ verb: "PING" })).toThrow(SessionError);
    expect(s.connectionLost()).toEqual([]);
  });

  it("LOGOUT's reply, a refused HELLO and a broken stream end it too", () => {
    const s = loggedIn();
    const lo = s.send({ verb: "LOGOUT" });
    expect(s.receive(ascii(`${lo.tag} OK LOGOUT\r\n`))).toMatchObject([
      { kind: "answer", ok: true },
      { kind: "closed", reason: { why: "logout" }, unanswered: [] },
    ]);

    const v = new ClientSession();
    v.send({ verb: "HELLO", versions: [7, 8] });
    v.send({ verb: "LOGIN", user: "alice", password: "pw" });
    expect(v.receive(ascii("c1 ERR UNSUPPORTED_VERSION :this server speaks version 1\r\n"))).toMatchObject([
      { kind: "answer", ok: false },
      { kind: "closed", reason: { why: "refused", tag: "c1" }, unanswered: ["c2"] },
    ]);

    const b = loggedIn();
    const g = b.send({ verb: "HISTORY", conv: "#rust", range: { after: 0 }, limit: 5 });
    expect(b.receive(ascii(`${g.tag} MSG #rust 1 2 bob {2}\r\nhiXX`))).toMatchObject([
      { kind: "closed", reason: { why: "undecodable", error: { code: "BAD_PAYLOAD_END" } }, unanswered: [g.tag] },
    ]);
  });

  it("a lost connection names what was left unanswered, in the order sent", () => {
    const s = loggedIn();
    const a = s.send({ verb: "GROUPS" });
    const b = s.send({ verb: "PING" });
    const c = s.send({ verb: "MEMBERS", group: "rust" });
    s.receive(ascii(`${a.tag} OK GROUPS 0\r\n`));
    expect(s.connectionLost()).toEqual([b.tag, c.tag]);
    expect(s.state).toBe("closed");
  });

  it("remembers the newest seq of each conversation from events, items and SEND replies", () => {
    const s = loggedIn();
    s.receive(ascii("* MSG #rust 7 1764072100000 bob {2}\r\nhi\r\n* MSG #rust 5 1764072100000 bob {2}\r\nhi\r\n"));
    const send = s.send({ verb: "SEND", to: "@bob", key: "k", text: "x" });
    s.receive(ascii(`${send.tag} OK SEND @bob 3 5\r\n* READ @carol 9\r\n`));
    expect([...s.seen]).toEqual([["#rust", 7], ["@bob", 3]]);
  });
});
