/**
 * How events read in the page: times, sizes, a colour per sender, and a sentence
 * for each event that is not a message.
 */

import type { StoredEvent } from "../proto/types";

/**
 * What separates the lines of a message (SPEC.md 6.6): text holds no LF, so a
 * message of several lines carries U+2028 LINE SEPARATOR between them.
 */
export const LINE_SEPARATOR = "\u2028";

/** A message's text as typed (lines joined by newlines) in its wire form. */
export function toWire(typed: string): string {
  return typed.replace(/\r\n?|\n/g, LINE_SEPARATOR);
}

// Made once: `toLocaleTimeString` with options builds a new formatter on every
// call, which over a screenful of rows per frame was most of a scroll's script
// time, and their native parts freed by the garbage collector made its longest
// frames (BENCHMARKS.md, issue 16). The same options give the same text.
let hourMinute: Intl.DateTimeFormat | undefined;
let dayMonth: Intl.DateTimeFormat | undefined;

/** `14:05`, or `3 Dec 14:05` for another day. */
export function time(ms: number, now: number = Date.now()): string {
  const d = new Date(ms);
  hourMinute ??= new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const hm = hourMinute.format(d);
  if (new Date(now).toDateString() === d.toDateString()) return hm;
  dayMonth ??= new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
  return `${dayMonth.format(d)} ${hm}`;
}

/** `1.5 MB` and the like. */
export function size(octets: number): string {
  if (octets < 1024) return `${octets} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = octets / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** A stable hue for a name, so that each sender keeps their colour. */
export function hue(name: string): number {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return h % 360;
}

/** The sentence for an event that is not a message or a file. */
export function describeEvent(e: StoredEvent): string {
  switch (e.verb) {
    case "MSG":
      return e.text;
    case "FILE":
      return `shared ${e.name}`;
    case "JOINED":
      return e.by === e.user ? `${e.user} joined` : `${e.user} joined, let in by ${e.by}`;
    case "LEFT":
      return `${e.user} left`;
    case "KICKED":
      return `${e.user} was removed by ${e.by}`;
    case "BANNED":
      return `${e.user} was banned by ${e.by}`;
    case "ROLE":
      return `${e.by} made ${e.user} ${e.role === "admin" ? "an admin" : "a member"}`;
    case "OFFERED":
      return `${e.by} offered the ownership to ${e.user}`;
    case "OWNER":
      return `${e.user} is the owner now (${e.previous} is an admin)`;
    case "RULE":
      return `${e.by} set the join rule to ${e.rule}`;
  }
}
