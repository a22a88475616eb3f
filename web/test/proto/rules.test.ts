import { describe, expect, it } from "vitest";

import { inClear } from "../../src/proto/rules";

describe("inClear (SPEC.md 11.7)", () => {
  it("is plain ws: to a host that is not loopback", () => {
    expect(inClear("ws://chat.example:7668/ws")).toBe(true);
    expect(inClear("ws://192.168.1.5:7668/ws")).toBe(true);
    expect(inClear("ws://127.evil.example/ws")).toBe(true);
    expect(inClear("ws://localhost.example/ws")).toBe(true);
  });

  it("is not TLS, nor loopback in any spelling", () => {
    expect(inClear("wss://chat.example/ws")).toBe(false);
    expect(inClear("ws://127.0.0.1:7668/ws")).toBe(false);
    expect(inClear("ws://127.1.2.3/ws")).toBe(false);
    expect(inClear("ws://localhost:7668/ws")).toBe(false);
    expect(inClear("ws://[::1]:7668/ws")).toBe(false);
  });

  it("counts an address it cannot read as in clear", () => {
    expect(inClear("not a url")).toBe(true);
  });
});
