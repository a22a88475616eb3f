import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";

import { hashFile, missing, offerName, upload } from "../../src/app/upload";
import { LinkError, type Done } from "../../src/app/link";
import { fileNameProblem } from "../../src/proto/syntax";
import type { Command } from "../../src/proto/types";

describe("hashing a file as it streams", () => {
  it("gives the SHA-256 of the whole, across slices", async () => {
    // 9 MiB and a bit: three slices of the hasher, the last one short.
    const bytes = new Uint8Array(9 * 1024 * 1024 + 123).map((_, i) => (i * 7919) & 0xff);
    const seen: number[] = [];
    const got = await hashFile(new Blob([bytes]), (n) => seen.push(n));
    expect(got).toBe(createHash("sha256").update(bytes).digest("hex"));
    expect(seen.at(-1)).toBe(bytes.length);
    expect(seen.length).toBe(3);
  });
});

describe("what an upload still has to send", () => {
  it("is the complement of what the server holds", () => {
    expect(missing(10, [])).toEqual([[0, 10]]);
    expect(missing(10, [{ offset: 0, length: 6 }])).toEqual([[6, 10]]);
    expect(missing(10, [{ offset: 2, length: 3 }, { offset: 7, length: 3 }])).toEqual([[0, 2], [5, 7]]);
    expect(missing(10, [{ offset: 0, length: 10 }])).toEqual([]);
  });

  it("makes names the server accepts for a new file", () => {
    expect(offerName(".bashrc")).toBe("bashrc");
    expect(offerName("...")).toBe("file");
    expect(offerName("a\u0007b.txt")).toBe("a_b.txt");
    expect(offerName("notes.txt")).toBe("notes.txt");
    // Names people have, which the protocol would refuse as they are.
    for (const name of ["👨\u200d👩 family.jpg", "a\\b.txt", "x\u202eexe.pdf", `${"测".repeat(90)}.txt`, "a/b"]) {
      const made = offerName(name);
      expect(fileNameProblem(made, true), `${name} → ${made}`).toBeUndefined();
    }
    const long = offerName(`${"测".repeat(90)}.txt`);
    expect(long.endsWith(".txt")).toBe(true);
    expect(new TextEncoder().encode(long).length).toBeLessThanOrEqual(255);
  });
});

describe("an upload", () => {
  /** A server that holds `held` bytes of the upload already and records what it gets;
   * `lose()` makes it lose them. */
  function server(held: number) {
    const sent: Command[] = [];
    let have = held;
    const lose = () => {
      have = 0;
    };
    const call = async (c: Command): Promise<Done> => {
      sent.push(c);
      switch (c.verb) {
        case "FILE-OFFER":
          return { reply: { verb: "FILE-OFFER", file: "f1", status: "need" }, items: [] };
        case "FILE-STATUS":
          return {
            reply: { verb: "FILE-STATUS", file: "f1", size: 10, received: have },
            items: have ? [{ verb: "HAVE", file: "f1", offset: 0, length: have }] : [],
          };
        case "FILE-CHUNK":
          have += c.data.length;
          return { reply: { verb: "FILE-CHUNK", file: "f1", received: have }, items: [] };
        case "FILE-COMMIT":
          return { reply: { verb: "FILE-COMMIT", file: "f1", conv: "#rust", seq: 44 }, items: [] };
        default:
          throw new Error(`unexpected ${c.verb}`);
      }
    };
    return { sent, call, lose };
  }

  it("resumes from what the server holds, sends the rest in chunks and commits", async () => {
    const { sent, call } = server(6);
    const file = new File([new TextEncoder().encode("hello,moon")], "notes.txt");
    const phases: string[] = [];
    const resumed: (number | undefined)[] = [];
    const seq = await upload(call, "#rust", file, 3, (p) => {
      phases.push(p.phase);
      if (p.phase === "uploading") resumed.push(p.resumedFrom);
    });
    expect(resumed[0]).toBe(6);
    expect(seq).toBe(44);
    const offer = sent[0]!;
    expect(offer).toMatchObject({ verb: "FILE-OFFER", to: "#rust", size: 10, name: "notes.txt" });
    expect(offer.verb === "FILE-OFFER" && offer.sha256).toBe(createHash("sha256").update("hello,moon").digest("hex"));
    const chunks = sent.filter((c) => c.verb === "FILE-CHUNK");
    expect(chunks.map((c) => c.verb === "FILE-CHUNK" && [c.offset, new TextDecoder().decode(c.data)])).toEqual([
      [6, "moo"],
      [9, "n"],
    ]);
    expect(sent.at(-1)?.verb).toBe("FILE-COMMIT");
    expect(phases[0]).toBe("hashing");
    expect(phases.at(-1)).toBe("done");
  });

  it("sends again, once, what a commit found lost (UPLOAD_INCOMPLETE), then commits", async () => {
    const { sent, call: held, lose } = server(10);
    let commits = 0;
    const call = async (c: Command): Promise<Done> => {
      if (c.verb === "FILE-COMMIT" && commits++ === 0) {
        // The bytes the server said it held are gone: it holds none from now on.
        lose();
        sent.push(c);
        throw new LinkError("refused", "upload incomplete", { code: "UPLOAD_INCOMPLETE" });
      }
      return held(c);
    };
    const file = new File([new TextEncoder().encode("hello,moon")], "notes.txt");
    const seen: { phase: string; done: number; resumedFrom?: number }[] = [];
    const seq = await upload(call, "#rust", file, 4, (p) => seen.push(p));
    expect(seq).toBe(44);
    expect(sent.map((c) => c.verb)).toEqual([
      "FILE-OFFER", "FILE-STATUS", "FILE-COMMIT", "FILE-STATUS", "FILE-CHUNK", "FILE-CHUNK", "FILE-CHUNK", "FILE-COMMIT",
    ]);
    const offsets = sent.flatMap((c) => (c.verb === "FILE-CHUNK" ? [c.offset] : []));
    expect(offsets).toEqual([0, 4, 8]);
    // All held at first, then nothing: the second pass counts up again from 0.
    const uploading = seen.filter((p) => p.phase === "uploading");
    expect(uploading.map((p) => p.done)).toEqual([10, 0, 4, 8, 10]);
    expect(uploading[0]!.resumedFrom).toBe(10);
    expect(uploading[1]!.resumedFrom).toBeUndefined();
    expect(seen.at(-1)).toMatchObject({ phase: "done", done: 10 });
  });

  it("gives up when a second commit is refused too", async () => {
    const { call: held } = server(10);
    const call = async (c: Command): Promise<Done> => {
      if (c.verb === "FILE-COMMIT") throw new LinkError("refused", "upload incomplete", { code: "UPLOAD_INCOMPLETE" });
      return held(c);
    };
    const file = new File([new TextEncoder().encode("hello,moon")], "notes.txt");
    await expect(upload(call, "#rust", file, 4, () => {})).rejects.toMatchObject({ code: "UPLOAD_INCOMPLETE" });
  });

  it("shares content the user uploaded before at once", async () => {
    const sent: Command[] = [];
    const call = async (c: Command): Promise<Done> => {
      sent.push(c);
      return { reply: { verb: "FILE-OFFER", file: "f2", status: "done", seq: 45 }, items: [] };
    };
    const seq = await upload(call, "#rust", new File(["x"], "x.txt"), 3, () => {});
    expect(seq).toBe(45);
    expect(sent.map((c) => c.verb)).toEqual(["FILE-OFFER"]);
  });
});
