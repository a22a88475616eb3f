/**
 * Sharing a file from the page (SPEC.md 6.7): hash it as it streams from disk
 * (WebCrypto digests only whole buffers, so an incremental SHA-256 reads it a slice
 * at a time and the file is never whole in memory), offer it, send the ranges the
 * server does not hold yet (FILE-STATUS: after a reload, picking the same file
 * again resumes where the server stopped), a few chunks in flight at a time, and
 * commit.
 */

import { sha256 } from "@noble/hashes/sha2.js";

import type { Conv } from "../proto/types";
import { LinkError, type Done } from "./link";

/** What is read from disk at a time while hashing. */
const HASH_SLICE = 4 * 1024 * 1024;

/** Chunks in flight at once: enough to keep the link busy, few enough to stay small. */
const WINDOW = 4;

/** Where an upload is. */
export interface Progress {
  readonly phase: "hashing" | "uploading" | "done" | "failed";
  /** Octets hashed, or held by the server. */
  readonly done: number;
  readonly size: number;
  /** The octets the server held already when this upload started: it resumed. */
  readonly resumedFrom?: number;
  readonly error?: string;
}

/** Sends one command; what the controller's `run` is. */
export type Call = (command: import("../proto/types").Command) => Promise<Done>;

/** Lower-case hex of bytes. */
export function hex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/** The SHA-256 of a file, read a slice at a time. */
export async function hashFile(file: Blob, onProgress: (hashed: number) => void = () => {}): Promise<string> {
  const h = sha256.create();
  for (let at = 0; at < file.size; at += HASH_SLICE) {
    const slice = new Uint8Array(await file.slice(at, Math.min(file.size, at + HASH_SLICE)).arrayBuffer());
    h.update(slice);
    onProgress(at + slice.length);
  }
  return hex(h.digest());
}

/** The ranges of `[0, size)` not covered by `have` (offset-ordered, as FILE-STATUS lists them). */
export function missing(size: number, have: readonly { offset: number; length: number }[]): [number, number][] {
  const out: [number, number][] = [];
  let at = 0;
  for (const { offset, length } of have) {
    if (offset > at) out.push([at, offset]);
    at = Math.max(at, offset + length);
  }
  if (at < size) out.push([at, size]);
  return out;
}

/** Longest file name in octets (SPEC.md 2.4). */
const NAME_MAX = 255;

/**
 * A name the server accepts for a new file (SPEC.md 2.4): no control or
 * invisible format character, no path separator, not beginning with `.`, at most
 * 255 octets — cut on a character boundary, keeping the extension.
 */
export function offerName(name: string): string {
  let clean = name
    .replace(/[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff/\\]/g, "_")
    .replace(/^\.+/, "");
  if (clean === "" || clean === "." || clean === "..") clean = "file";
  const octets = (s: string) => new TextEncoder().encode(s).length;
  if (octets(clean) <= NAME_MAX) return clean;
  const dot = clean.lastIndexOf(".");
  const ext = dot > 0 && clean.length - dot <= 16 ? clean.slice(dot) : "";
  let stem = clean.slice(0, clean.length - ext.length);
  // By code points, so that no character is cut in half.
  const points = Array.from(stem);
  while (points.length > 0 && octets(points.join("") + ext) > NAME_MAX) points.pop();
  stem = points.join("");
  return stem + ext || "file";
}

/**
 * Uploads `file` to `conv`. `chunk` is the server's chunk size. Resolves with the
 * seq of the FILE event; rejects with what went wrong. A commit answered
 * `UPLOAD_INCOMPLETE` (bytes the server said it held were lost in a crash, SPEC.md
 * 6.7) is followed, once, by what FILE-STATUS then says is missing, and a commit.
 */
export async function upload(
  call: Call,
  conv: Conv,
  file: File,
  chunk: number,
  onProgress: (p: Progress) => void,
): Promise<number> {
  const size = file.size;
  onProgress({ phase: "hashing", done: 0, size });
  const sha = await hashFile(file, (n) => onProgress({ phase: "hashing", done: n, size }));
  const offer = (await call({ verb: "FILE-OFFER", to: conv, size, sha256: sha, name: offerName(file.name) })).reply;
  if (offer.verb !== "FILE-OFFER") throw new Error("the server answered something else");
  if (offer.status === "done") {
    onProgress({ phase: "done", done: size, size });
    return offer.seq;
  }
  const id = offer.file;
  for (let again = true; ; again = false) {
    await sendMissing(call, id, file, chunk, onProgress);
    try {
      const commit = (await call({ verb: "FILE-COMMIT", file: id })).reply;
      if (commit.verb !== "FILE-COMMIT") throw new Error("the server answered something else");
      onProgress({ phase: "done", done: size, size });
      return commit.seq;
    } catch (e) {
      if (!(again && e instanceof LinkError && e.code === "UPLOAD_INCOMPLETE")) throw e;
    }
  }
}

/** Sends the ranges of upload `id` that FILE-STATUS says the server lacks. */
async function sendMissing(
  call: Call,
  id: string,
  file: File,
  chunk: number,
  onProgress: (p: Progress) => void,
): Promise<void> {
  const size = file.size;
  const status = await call({ verb: "FILE-STATUS", file: id });
  const have = status.items.flatMap((i) => (i.verb === "HAVE" ? [{ offset: i.offset, length: i.length }] : []));
  let held = have.reduce((n, r) => n + r.length, 0);
  const resumedFrom = held > 0 ? held : undefined;
  onProgress({ phase: "uploading", done: held, size, resumedFrom });
  const pieces: [number, number][] = [];
  for (const [from, to] of missing(size, have)) {
    for (let at = from; at < to; at += chunk) pieces.push([at, Math.min(to, at + chunk)]);
  }
  let next = 0;
  const worker = async () => {
    while (next < pieces.length) {
      const [from, to] = pieces[next++]!;
      const data = new Uint8Array(await file.slice(from, to).arrayBuffer());
      const reply = (await call({ verb: "FILE-CHUNK", file: id, offset: from, data })).reply;
      if (reply.verb === "FILE-CHUNK") held = Math.max(held, reply.received);
      onProgress({ phase: "uploading", done: held, size, resumedFrom });
    }
  };
  await Promise.all(Array.from({ length: Math.min(WINDOW, pieces.length) }, worker));
}
