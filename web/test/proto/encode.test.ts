// The encoder refuses, with the server's error code, every command the server would
// refuse as malformed, and writes the rest exactly.
import { describe, expect, it } from "vitest";

import { type Command, EncodeError, type ErrorCode, encodeRequest } from "../../src/proto";
import { ClientFrameReader } from "../../src/proto/testing/clientDecode";

const utf8 = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const enc = (command: Command, tag = "t1") => text(encodeRequest({ tag, command }, { maxPayload: 1 << 20 }));

/** The code and field the encoder refuses a command with. */
function refusal(command: Command, tag = "t1", maxPayload?: number): [ErrorCode, string] | "encoded" {
  try {
    encodeRequest({ tag, command }, maxPayload === undefined ? {} : { maxPayload });
  } catch (e) {
    if (e instanceof EncodeError) return [e.code, e.field];
    throw e;
  }
  return "encoded";
}

describe("the encoder", () => {
  it("refuses bad tags", () => {
    for (const tag of ["", " a", "a b", "x".repeat(33), "é", "a\r\n", "*", "a{1}"]) {
      expect(refusal({ verb: "PING" }, tag), JSON.stringify(tag)).toEqual(["BAD_TAG", "tag"]);
    }
    expect(refusal({ verb: "PING" }, "A.b-c_9".padEnd(32, "z"))).toBe("encoded");
  });

  it("refuses bad names, wherever they stand", () => {
    for (const name of ["", "Alice", "1alice", "ru$t", "a b", "a".repeat(33), "alice\r\nc2 DELETE rust", "élan", "-x"]) {
      expect(refusal({ verb: "JOIN", group: name }), name).toEqual(["BAD_NAME", "group"]);
      expect(refusal({ verb: "LOGIN", user: name, password: "pw" })).toEqual(["BAD_NAME", "user"]);
      expect(refusal({ verb: "KICK", group: "rust", user: name })).toEqual(["BAD_NAME", "user"]);
      expect(refusal({ verb: "SEND", to: `@${name}`, key: "k", text: "hi" })).toEqual(["BAD_NAME", "to"]);
      expect(refusal({ verb: "ONLINE", group: name })).toEqual(["BAD_NAME", "group"]);
    }
    expect(refusal({ verb: "JOIN", group: "a".repeat(32) })).toBe("encoded");
    expect(refusal({ verb: "JOIN", group: "a0_.-" })).toBe("encoded");
    expect(refusal({ verb: "SEND", to: "rust" as "#rust", key: "k", text: "hi" })).toEqual(["SYNTAX", "to"]);
    expect(refusal({ verb: "HISTORY", conv: "&rust" as "#rust", range: "last", limit: 1 })).toEqual(["SYNTAX", "conv"]);
  });

  it("refuses text the server would refuse as BAD_TEXT", () => {
    const bad = ["", "line\r\nc2 DELETE rust", "nul\u0000", "esc\u001b[31m", "del\u007f", "c1\u0085", "lone\ud800", "\udc00x", "x".repeat(65_537)];
    for (const t of bad) {
      expect(refusal({ verb: "SEND", to: "#rust", key: "k", text: t }, "t1", 1 << 20), JSON.stringify(t.slice(0, 20))).toEqual(["BAD_TEXT", "text"]);
      expect(refusal({ verb: "JOIN", group: "rust", reason: t }, "t1", 1 << 20)).toEqual(["BAD_TEXT", "reason"]);
      expect(refusal({ verb: "TOKEN", label: t }, "t1", 1 << 20)).toEqual(["BAD_TEXT", "label"]);
    }
    // TAB, every printable character, and astral ones are text; 65,536 octets are allowed.
    for (const t of ["a\tb", "{1}", "🙂 नमस्ते \u00a0", "\u2028", "x".repeat(65_536), "é".repeat(32_768)]) {
      expect(refusal({ verb: "SEND", to: "#rust", key: "k", text: t }, "t1", 1 << 20)).toBe("encoded");
    }
  });

  it("refuses bad file names as BAD_FILE_NAME", () => {
    const offer = (name: string): Command => ({ verb: "FILE-OFFER", to: "#rust", size: 10, sha256: "a".repeat(64), name });
    for (const name of [".bashrc", ".", "..", "a/b", "a\\b", "x\u202egnp.exe", "zero\u200bwidth", "\ufeffbom", "tab\u0009\u0000", "n".repeat(256)]) {
      expect(refusal(offer(name)), JSON.stringify(name)).toEqual(["BAD_FILE_NAME", "name"]);
    }
    expect(refusal(offer("notes.txt"))).toBe("encoded");
    expect(refusal(offer("a..b"))).toBe("encoded");
    expect(refusal(offer("é".repeat(127)))).toBe("encoded");
  });

  it("refuses other malformed fields as SYNTAX", () => {
    const cases: [Command, string][] = [
      [{ verb: "HELLO", versions: [] }, "versions"],
      [{ verb: "HELLO", versions: [0] }, "versions"],
      [{ verb: "HELLO", versions: [1, 1] }, "versions"],
      [{ verb: "HELLO", versions: [65536] }, "versions"],
      [{ verb: "HELLO", versions: Array.from({ length: 17 }, (_, i) => i + 1) }, "versions"],
      [{ verb: "HELLO", versions: [1], software: "web client" }, "software"],
      [{ verb: "SEND", to: "#rust", key: "", text: "x" }, "key"],
      [{ verb: "SEND", to: "#rust", key: "k".repeat(65), text: "x" }, "key"],
      [{ verb: "SEND", to: "#rust", key: "a b", text: "x" }, "key"],
      [{ verb: "HISTORY", conv: "#rust", range: "last", limit: 0 }, "limit"],
      [{ verb: "HISTORY", conv: "#rust", range: "last", limit: 2 ** 32 }, "limit"],
      [{ verb: "HISTORY", conv: "#rust", range: { after: -1 }, limit: 1 }, "range.after"],
      [{ verb: "HISTORY", conv: "#rust", range: { after: 1.5 }, limit: 1 }, "range.after"],
      [{ verb: "FILE-GET", file: "f/1", offset: 0, length: 0 }, "file"],
      [{ verb: "FILE-GET", file: "f", offset: 2 ** 53, length: 0 }, "offset"],
      [{ verb: "FILE-OFFER", to: "#rust", size: 10, sha256: "A".repeat(64), name: "n" }, "sha256"],
      [{ verb: "AUTH", user: "alice", token: 1, secret: "0".repeat(63) }, "secret"],
      [{ verb: "REGISTER", user: "alice", password: "" }, "password"],
      [{ verb: "REGISTER", user: "alice", password: "p".repeat(1025) }, "password"],
      [{ verb: "PASSWORD", old: new Uint8Array(), new: "pw-new-one" }, "old"],
      [{ verb: "LOGIN", user: "alice", password: "half\ud800" }, "password"],
      [{ verb: "CREATE", group: "rust", rule: "closed" as "open" }, "rule"],
      [{ verb: "READ", conv: "#rust", seq: 18446744073709551616n }, "seq"],
      [{ verb: "READ", conv: "#rust", seq: -1 }, "seq"],
    ];
    for (const [command, field] of cases) {
      expect(refusal(command), JSON.stringify(command, (_, v) => (typeof v === "bigint" ? String(v) : v))).toEqual(["SYNTAX", field]);
    }
    expect(refusal({ verb: "FROB" } as unknown as Command)).toEqual(["UNKNOWN_COMMAND", "verb"]);
    // As the server answers `e2 KICK rust` (SPEC.md 8).
    expect(refusal({ verb: "KICK", group: "rust" } as unknown as Command)).toEqual(["SYNTAX", "user"]);
  });

  it("refuses a payload over the limit it is given (65,536 by default)", () => {
    const data = (n: number): Command => ({ verb: "FILE-CHUNK", file: "f", offset: 0, data: new Uint8Array(n) });
    expect(refusal(data(65_536))).toBe("encoded");
    expect(refusal(data(65_537))).toEqual(["PAYLOAD_TOO_LARGE", "data"]);
    expect(refusal(data(1000), "t1", 999)).toEqual(["PAYLOAD_TOO_LARGE", "data"]);
  });

  it("writes exact frames, which decode to the same command", () => {
    const table: [Command, string][] = [
      [{ verb: "HELLO", versions: [1, 2] }, "t1 HELLO 1,2\r\n"],
      [{ verb: "LOGOUT", revoke: true }, "t1 LOGOUT revoke\r\n"],
      [{ verb: "LOGOUT" }, "t1 LOGOUT\r\n"],
      [{ verb: "GROUPS", offers: true }, "t1 GROUPS offers\r\n"],
      [{ verb: "CONVERSATIONS", read: true }, "t1 CONVERSATIONS read\r\n"],
      [{ verb: "READ", conv: "@bob", seq: 18446744073709551615n }, "t1 READ @bob 18446744073709551615\r\n"],
      [{ verb: "READ", conv: "#rust", seq: 0 }, "t1 READ #rust 0\r\n"],
      [{ verb: "CREATE", group: "rust", rule: "invite" }, "t1 CREATE rust invite\r\n"],
      [{ verb: "KICK", group: "rust", user: "bob", ban: true }, "t1 KICK rust bob ban\r\n"],
      [{ verb: "HISTORY", conv: "#rust", range: { after: 40 }, limit: 4294967295 }, "t1 HISTORY #rust after 40 4294967295\r\n"],
      [{ verb: "JOIN", group: "rust", reason: "hi!" }, "t1 JOIN rust {3}\r\nhi!\r\n"],
      [{ verb: "FILE-CHUNK", file: "f", offset: 0, data: new Uint8Array() }, "t1 FILE-CHUNK f 0 {0}\r\n\r\n"],
      [{ verb: "PASSWORD", old: utf8("pw-alice"), new: utf8("correct-horse") }, "t1 PASSWORD 8 {21}\r\npw-alicecorrect-horse\r\n"],
      [{ verb: "DELETE-ACCOUNT", password: new Uint8Array([0x0d, 0x0a]) }, "t1 DELETE-ACCOUNT {2}\r\n\r\n\r\n"],
      [{ verb: "SEND", to: "@bob", key: "5f1c:0001", text: "é🙂" }, "t1 SEND @bob 5f1c:0001 {6}\r\né🙂\r\n"],
    ];
    for (const [command, wire] of table) {
      const bytes = encodeRequest({ tag: "t1", command }, { maxPayload: 1 << 20 });
      expect(text(bytes)).toBe(wire);
      const [decoded] = new ClientFrameReader().push(bytes);
      if (!decoded?.ok) throw new Error(`${wire}: ${decoded?.error.message}`);
      expect(decoded.frame.command).toEqual(command);
      expect(encodeRequest(decoded.frame, { maxPayload: 1 << 20 })).toEqual(bytes);
    }
    expect(enc({ verb: "ONLINE" })).toBe("t1 ONLINE\r\n");
    // A password given as a string goes as its UTF-8.
    expect(enc({ verb: "PASSWORD", old: "pässword", new: "correct-horse" })).toBe("t1 PASSWORD 9 {22}\r\npässwordcorrect-horse\r\n");
  });
});
