import { describe, expect, it } from "vitest";

import { State } from "../../src/app/state";
import type { StoredEvent } from "../../src/proto/types";

function msg(seq: number, from: string, conv: "#rust" | "@bob" = "#rust"): StoredEvent {
  return { verb: "MSG", conv, seq, time: 0, from, text: "hi" };
}

describe("unread counts", () => {
  it("count the messages of others outside the conversation being read", () => {
    const s = new State();
    s.me.value = "alice";
    expect(s.stored(msg(1, "bob"), false)).toBe(true);
    expect(s.stored(msg(2, "bob"), false)).toBe(true);
    expect(s.conversation("#rust").unread).toBe(2);
    // Her own message is no news, and reading moves the marker.
    expect(s.stored(msg(3, "alice"), false)).toBe(false);
    expect(s.conversation("#rust").read).toBe(3);
    expect(s.conversation("#rust").unread).toBe(0);
    expect(s.stored(msg(4, "bob"), true)).toBe(false);
    expect(s.conversation("#rust").unread).toBe(0);
  });

  it("leave out membership changes and repeats (SPEC.md 6.8)", () => {
    const s = new State();
    s.me.value = "alice";
    const joined: StoredEvent = { verb: "JOINED", conv: "#rust", seq: 1, time: 0, user: "bob", by: "bob" };
    expect(s.stored(joined, false)).toBe(false);
    expect(s.stored(msg(2, "bob"), false)).toBe(true);
    expect(s.stored(msg(2, "bob"), false)).toBe(false);
    expect(s.conversation("#rust").unread).toBe(1);
    expect(s.conversation("#rust").latest).toBe(2);
  });

  it("come from the server's markers, and shrink when another device reads", () => {
    const s = new State();
    s.setConversations([
      { verb: "CONV", conv: "#rust", latest: 10, marker: { read: 4, unread: 5 } },
      { verb: "CONV", conv: "@bob", latest: 2 },
    ]);
    expect(s.conversation("#rust").unread).toBe(5);
    expect(s.conversation("@bob").latest).toBe(2);
    s.apply({ verb: "READ", conv: "#rust", seq: 8 });
    expect(s.conversation("#rust").read).toBe(8);
    expect(s.conversation("#rust").unread).toBe(2);
    // A marker never moves back.
    s.apply({ verb: "READ", conv: "#rust", seq: 3 });
    expect(s.conversation("#rust").read).toBe(8);
  });
});

describe("lists", () => {
  it("follow presence and requests live", () => {
    const s = new State();
    s.setMembers("rust", [
      { verb: "MEMBER", group: "rust", user: "alice", role: "owner", presence: "online" },
      { verb: "MEMBER", group: "rust", user: "bob", role: "member", presence: "offline" },
    ]);
    s.apply({ verb: "PRESENCE", user: "bob", presence: "online" });
    expect(s.members.value.get("rust")?.map((m) => m.presence)).toEqual(["online", "online"]);
    s.apply({ verb: "REQUESTED", group: "rust", user: "carol", time: 5, reason: "hi" });
    s.apply({ verb: "REQUESTED", group: "rust", user: "carol", time: 5, reason: "hi" });
    expect(s.requests.value.get("rust")).toEqual([{ user: "carol", time: 5, reason: "hi" }]);
    s.dropRequest("rust", "carol");
    expect(s.requests.value.get("rust")).toEqual([]);
  });

  it("know the user's role from GROUPS", () => {
    const s = new State();
    s.setGroups([
      { verb: "GROUP", group: "rust", membership: "admin", rule: "approval", members: 3, latest: 7 },
      { verb: "GROUP", group: "go", membership: "invited", rule: "open", members: 2, latest: 0 },
    ]);
    expect(s.roleIn("rust")).toBe("admin");
    expect(s.roleIn("go")).toBeUndefined();
    expect(s.conversation("#rust").latest).toBe(7);
    expect(s.conversations.has("#go")).toBe(false);
  });
});
