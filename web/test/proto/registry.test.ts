// SPEC.md's tables and the code's: the error registry (Appendix C) and the limits
// (Appendix B) are the same, row by row.
import { describe, expect, it } from "vitest";

import { ABSENT_LIMITS, ERROR_CODES, LIMIT_KEYS, allowsRetry, closesConnection, retryDelay } from "../../src/proto";
import { SPEC } from "./spec";

/** The cells of the table after `heading`, backticks removed. */
function table(heading: string): string[][] {
  const start = SPEC.indexOf(heading);
  expect(start, heading).toBeGreaterThan(-1);
  const lines = SPEC.slice(start).split("\n");
  const first = lines.findIndex((l) => l.startsWith("|"));
  const rows: string[][] = [];
  for (const line of lines.slice(first + 2)) {
    if (!line.startsWith("|")) break;
    rows.push(line.slice(1, -1).split("|").map((c) => c.trim().replace(/`/g, "")));
  }
  return rows;
}

describe("SPEC.md's registries", () => {
  it("Appendix C: the same codes, in order, closing and retrying as it says", () => {
    const rows = table("## Appendix C. Error codes");
    expect(rows.length).toBeGreaterThan(50);
    expect(rows.map((r) => r[0])).toEqual([...ERROR_CODES]);
    for (const [code, connection, retry] of rows as [typeof ERROR_CODES[number], string, string][]) {
      expect(closesConnection(code) ? "closed" : "survives", code).toBe(connection);
      expect(allowsRetry(code) ? "yes" : "no", code).toBe(retry);
    }
    expect(retryDelay({ code: "RATE_LIMITED", retryMs: 250 })).toBe(250);
    expect(retryDelay({ code: "NOT_MEMBER", retryMs: 250 })).toBeUndefined();
  });

  it("Appendix B: the same keys, in order, and the values taken when absent", () => {
    const rows = table("## Appendix B. Limits");
    expect(rows.map((r) => r[0])).toEqual([...LIMIT_KEYS]);
    for (const [key, , meaning] of rows as [typeof LIMIT_KEYS[number], string, string][]) {
      const absent = /Absent: (\d+)/.exec(meaning);
      expect(ABSENT_LIMITS[key], key).toBe(absent ? Number(absent[1]) : undefined);
    }
  });
});
