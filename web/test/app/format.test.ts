import { describe, expect, it } from "vitest";

import { mentions, splitMentions } from "../../src/app/mention";
import { LINE_SEPARATOR, describeEvent, size, time, toWire } from "../../src/ui/format";

describe("mentions", () => {
  it("are the user's name as a word, with or without @", () => {
    expect(mentions("hi @alice!", "alice")).toBe(true);
    expect(mentions("alice: look", "alice")).toBe(true);
    expect(mentions("malice aforethought", "alice")).toBe(false);
    expect(mentions("alice2 is someone else", "alice")).toBe(false);
    expect(mentions("a.b here", "a.b")).toBe(true);
    expect(mentions("axb here", "a.b")).toBe(false);
  });

  it("are split out for highlighting, the rest kept as it was", () => {
    const parts = splitMentions("hi @alice and alice, not malice", "alice");
    expect(parts).toEqual([
      { text: "hi ", mention: false },
      { text: "@alice", mention: true },
      { text: " and ", mention: false },
      { text: "alice", mention: true },
      { text: ", not malice", mention: false },
    ]);
    expect(parts.map((p) => p.text).join("")).toBe("hi @alice and alice, not malice");
  });
});

describe("several lines", () => {
  it("travel joined by U+2028, which holds no control character", () => {
    expect(toWire("one\ntwo\r\nthree")).toBe(`one${LINE_SEPARATOR}two${LINE_SEPARATOR}three`);
    expect(/[\u0000-\u001f]/.test(toWire("a\nb\r\nc"))).toBe(false);
  });
});

describe("events in words", () => {
  it("say who did what", () => {
    const base = { conv: "#rust" as const, seq: 1, time: 0 };
    expect(describeEvent({ ...base, verb: "JOINED", user: "bob", by: "bob" })).toBe("bob joined");
    expect(describeEvent({ ...base, verb: "JOINED", user: "bob", by: "alice" })).toBe("bob joined, let in by alice");
    expect(describeEvent({ ...base, verb: "BANNED", user: "eve", by: "alice" })).toBe("eve was banned by alice");
    expect(describeEvent({ ...base, verb: "OWNER", user: "bob", previous: "alice" })).toBe(
      "bob is the owner now (alice is an admin)",
    );
  });

  it("sizes read as people write them", () => {
    expect(size(512)).toBe("512 B");
    expect(size(1536)).toBe("1.5 KB");
    expect(size(5 * 1024 * 1024)).toBe("5.0 MB");
    expect(size(300 * 1024 * 1024)).toBe("300 MB");
  });
});

describe("times", () => {
  it("read as the locale's own formatting would: the hour alone today, the day before it otherwise", () => {
    const now = new Date(2026, 11, 4, 15, 30).getTime();
    const today = new Date(2026, 11, 4, 9, 5).getTime();
    const earlier = new Date(2026, 10, 28, 23, 59).getTime();
    const hm = (ms: number) => new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    const day = (ms: number) => new Date(ms).toLocaleDateString(undefined, { day: "numeric", month: "short" });
    expect(time(today, now)).toBe(hm(today));
    expect(time(earlier, now)).toBe(`${day(earlier)} ${hm(earlier)}`);
    // Formatters made once give the same text on every call.
    expect(time(earlier, now)).toBe(time(earlier, now));
  });
});
