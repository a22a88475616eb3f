/**
 * Test-only: writing what a server sends, so that tests can check the server-frame
 * decoder by round trips and play a server to a session. The page never imports it,
 * so the bundle does not carry it. It writes what it is given without checking it.
 */

import type { Failure } from "../errors";
import { LIMIT_KEYS } from "../limits";
import { utf8 } from "../syntax";
import type { Event, Item, OkReply, ServerFrame, StoredEvent } from "../types";
import { frameBytes } from "../wire";

/** The octets of one server frame. */
export function encodeServerFrame(frame: ServerFrame): Uint8Array {
  switch (frame.kind) {
    case "ok":
      return frameBytes(`${frame.tag} OK ${okReply(frame.reply)}`);
    case "err":
      return frameBytes(`${frame.tag} ERR ${failure(frame.failure)}`);
    case "item": {
      const [line, payload] = item(frame.item);
      return frameBytes(`${frame.tag} ${line}`, payload);
    }
    case "event": {
      const [line, payload] = event(frame.event);
      return frameBytes(`* ${line}`, payload);
    }
  }
}

/** `error-code [SP "retry=" number] [SP ":" note]` */
function failure(f: Failure): string {
  let s: string = f.code;
  if (f.retryMs !== undefined) s += ` retry=${f.retryMs}`;
  if (f.note !== undefined) s += ` :${f.note}`;
  return s;
}

function okReply(r: OkReply): string {
  switch (r.verb) {
    case "HELLO": {
      const words = [`HELLO ${r.version} ${r.software}`];
      if (r.features.length > 0) words.push(`features=${r.features.join(",")}`);
      for (const key of LIMIT_KEYS) words.push(`${key}=${r.limits[key]}`);
      return words.join(" ");
    }
    case "REGISTER":
    case "LOGIN":
    case "AUTH":
      return `${r.verb} ${r.user}`;
    case "JOIN":
      return `JOIN ${r.group} ${r.outcome}`;
    case "INVITE":
      return `INVITE ${r.group} ${r.user} ${r.outcome}`;
    case "SEND":
      return `SEND ${r.conv} ${r.seq} ${r.time}`;
    case "HISTORY":
      return `HISTORY ${r.conv} ${r.latest} ${r.oldest}`;
    case "FILE-OFFER":
      return r.status === "need" ? `FILE-OFFER ${r.file} need` : `FILE-OFFER ${r.file} done ${r.seq}`;
    case "FILE-CHUNK":
      return `FILE-CHUNK ${r.file} ${r.received}`;
    case "FILE-STATUS":
      return `FILE-STATUS ${r.file} ${r.size} ${r.received}`;
    case "FILE-COMMIT":
      return `FILE-COMMIT ${r.file} ${r.conv} ${r.seq}`;
    case "FILE-GET":
      return `FILE-GET ${r.file} ${r.offset} ${r.length}`;
    case "TOKEN":
      return `TOKEN ${r.token} ${r.secret}`;
    case "READ":
      return `READ ${r.conv} ${r.seq}`;
    default:
      return "count" in r ? `${r.verb} ${r.count}` : r.verb;
  }
}

type Line = readonly [string, Uint8Array?];

function stored(e: StoredEvent): Line {
  const head = `${e.verb} ${e.conv} ${e.seq} ${e.time}`;
  switch (e.verb) {
    case "MSG":
      return [`${head} ${e.from}`, utf8(e.text)];
    case "FILE":
      return [`${head} ${e.from} ${e.file} ${e.size} ${e.sha256}`, utf8(e.name)];
    case "JOINED":
    case "KICKED":
    case "BANNED":
    case "OFFERED":
      return [`${head} ${e.user} ${e.by}`];
    case "OWNER":
      return [`${head} ${e.user} ${e.previous}`];
    case "LEFT":
      return [`${head} ${e.user}`];
    case "ROLE":
      return [`${head} ${e.user} ${e.role} ${e.by}`];
    case "RULE":
      return [`${head} ${e.rule} ${e.by}`];
  }
}

function item(i: Item): Line {
  switch (i.verb) {
    case "REQUEST":
      return [`REQUEST ${i.group} ${i.user} ${i.time}`, i.reason === undefined ? undefined : utf8(i.reason)];
    case "GROUP": {
      const line = `GROUP ${i.group} ${i.membership} ${i.rule} ${i.members} ${i.latest}`;
      return [i.offer === undefined ? line : `${line} offer ${i.offer}`];
    }
    case "CONV": {
      const line = `CONV ${i.conv} ${i.latest}`;
      return [i.marker === undefined ? line : `${line} ${i.marker.read} ${i.marker.unread}`];
    }
    case "MEMBER":
      return [`MEMBER ${i.group} ${i.user} ${i.role} ${i.presence}`];
    case "ONLINE":
      return [`ONLINE ${i.user}`];
    case "HAVE":
      return [`HAVE ${i.file} ${i.offset} ${i.length}`];
    case "CHUNK":
      return [`CHUNK ${i.file} ${i.offset}`, i.data];
    case "TOKEN":
      return [`TOKEN ${i.token} ${i.created} ${i.used} ${i.expires} ${i.address}`, utf8(i.label)];
    case "BAN":
      return [`BAN ${i.group} ${i.user} ${i.by}`];
    default:
      return stored(i);
  }
}

function event(e: Event): Line {
  switch (e.verb) {
    case "REQUESTED":
      return [`REQUESTED ${e.group} ${e.user} ${e.time}`, e.reason === undefined ? undefined : utf8(e.reason)];
    case "INVITED":
      return [`INVITED ${e.group} ${e.by} ${e.time}`];
    case "APPROVED":
    case "REJECTED":
    case "DELETED":
      return [`${e.verb} ${e.group} ${e.by}`];
    case "PRESENCE":
      return [`PRESENCE ${e.user} ${e.presence}`];
    case "READ":
      return [`READ ${e.conv} ${e.seq}`];
    case "ERR":
    case "BYE":
      return [`${e.verb} ${failure(e.failure)}`];
    default:
      return stored(e);
  }
}
