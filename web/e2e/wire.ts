// A program that speaks the protocol over TCP, for tests and measurements that
// need the server prepared (many messages) or changed behind a page's back: the
// page's own sans-IO session, over a node socket.
import { Socket } from "node:net";

import { ClientSession, type Answer } from "../src/proto/session";
import type { Command } from "../src/proto/types";

/** A logged-in protocol connection. */
export class Wire {
  private readonly waiting = new Map<string, (a: Answer) => void>();

  private constructor(
    private readonly socket: Socket,
    private readonly session: ClientSession,
  ) {
    socket.on("data", (chunk: Buffer) => {
      for (const out of session.receive(new Uint8Array(chunk))) {
        if (out.kind === "answer") {
          const w = this.waiting.get(out.tag);
          this.waiting.delete(out.tag);
          w?.(out);
        }
      }
    });
  }

  /** Connects to `addr` (`host:port`), says HELLO and logs in (or registers). */
  static async open(addr: string, user: string, password: string, register = false): Promise<Wire> {
    const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
    const socket = new Socket();
    await new Promise<void>((ok, fail) => {
      socket.once("error", fail);
      socket.connect(port, host, () => ok());
    });
    const wire = new Wire(socket, new ClientSession());
    await wire.call({ verb: "HELLO", versions: [1], software: "baatkaro-e2e/0" });
    await wire.call(register ? { verb: "REGISTER", user, password } : { verb: "LOGIN", user, password });
    return wire;
  }

  /** Sends a command and waits for its answer; a refusal throws. */
  call(command: Command): Promise<Answer> {
    const sent = this.session.send(command);
    return new Promise((ok, fail) => {
      this.waiting.set(sent.tag, (a) => (a.ok ? ok(a) : fail(new Error(`${command.verb}: ${JSON.stringify(a.error)}`))));
      this.socket.write(sent.bytes);
    });
  }

  /** Sends every command, at most `window` unanswered at once. */
  async pipeline(commands: Iterable<Command>, window = 256): Promise<void> {
    const inFlight = new Set<Promise<Answer>>();
    for (const c of commands) {
      const p = this.call(c);
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      if (inFlight.size >= window) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  }

  close(): void {
    this.socket.destroy();
  }
}
