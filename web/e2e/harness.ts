// What the end-to-end tests stand on: a real baatkaro-server on 127.0.0.1 port 0
// with a temporary data directory, and Debian's Chromium driven by playwright-core.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, type BrowserContext, type Page, chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));

/** The server binary: $BAATKARO_SERVER, else the debug build of the workspace. */
export const SERVER_BIN =
  process.env.BAATKARO_SERVER ?? resolve(here, "../../target/debug/baatkaro-server");

/** Where screenshots go (not committed): web/e2e/screenshots. */
export const SHOTS = resolve(here, "screenshots");

/** Longest a server may take to say where it listens. */
const START_WAIT_MS = 20_000;

/** A running server. */
export interface TestServer {
  /** The web client's address, `http://127.0.0.1:PORT`. */
  url: string;
  /** The protocol's TCP address, `127.0.0.1:PORT`. */
  tcp(): string;
  /** The data directory (kept across restarts). */
  dataDir: string;
  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Stops it and starts it again on the same ports and data. */
  restart(): Promise<void>;
  /** Stops it and removes its data. */
  dispose(): Promise<void>;
  /** The last of what the server logged (at most {@link LOG_KEPT} characters). */
  recentLog(): string;
}

/** How much of the server's log a {@link TestServer} keeps, the most recent. */
const LOG_KEPT = 32 * 1024;

interface Process {
  child: ChildProcess;
  web: string;
  tcp: string;
  /** What it logged since it started listening, the last {@link LOG_KEPT} characters. */
  tail: { text: string };
}

/** Starts the binary and waits until it says where it listens. */
function launch(dataDir: string, web: string, tcp: string, extra: readonly string[]): Promise<Process> {
  const child = spawn(
    SERVER_BIN,
    [
      "--listen", tcp,
      "--web-listen", web,
      "--data-dir", dataDir,
      "--insecure-test-hash",
      "--logins-per-minute", "100000",
      "--no-direct-io",
      "--log", "info",
      ...extra,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  return new Promise((ok, fail) => {
    let log = "";
    let tcpAt = "";
    let listening = false;
    const tail = { text: "" };
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      fail(new Error(`the server did not start within ${START_WAIT_MS} ms:\n${log}`));
    }, START_WAIT_MS);
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      if (listening) {
        // Bounded: the most recent lines, for a failed step to show.
        tail.text = (tail.text + chunk).slice(-LOG_KEPT);
        return;
      }
      // Bounded: only the start-up lines matter here.
      if (log.length < 64 * 1024) log += chunk;
      const tcpMatch = /listening on (\S+)/.exec(log);
      if (tcpMatch) tcpAt = tcpMatch[1]!;
      const webMatch = /web client at http:\/\/(\S+?)\//.exec(log);
      if (webMatch && tcpAt) {
        clearTimeout(timer);
        listening = true;
        ok({ child, web: webMatch[1]!, tcp: tcpAt, tail });
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`the server exited (${code}) before it listened:\n${log}`));
    });
  });
}

/** Waits for a process to exit, killing it after `ms`. */
function exited(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((ok) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      ok();
    });
  });
}

/** Starts a server on fresh data, with these flags besides the harness's own. */
export async function startServer(extra: readonly string[] = []): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "baatkaro-e2e-"));
  let proc = await launch(dataDir, "127.0.0.1:0", "127.0.0.1:0", extra);
  const server: TestServer = {
    url: `http://${proc.web}`,
    tcp: () => proc.tcp,
    dataDir,
    async stop() {
      proc.child.kill("SIGTERM");
      await exited(proc.child, 20_000);
    },
    async restart() {
      await server.stop();
      proc = await launch(dataDir, proc.web, proc.tcp, extra);
    },
    async dispose() {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
    recentLog: () => proc.tail.text,
  };
  return server;
}

/** A host name the browser resolves to 127.0.0.1 (see {@link launchBrowser}). */
export const CLEAR_HOST = "chat.test";

/** Debian's Chromium, headless, with what this sandboxed, offline machine needs. */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // A name that is not loopback to the page, reached on loopback: how the
      // step for a server reached in plain text beyond this machine is shown.
      `--host-resolver-rules=MAP ${CLEAR_HOST} 127.0.0.1`,
    ],
  });
}

/** How many of a page's console lines {@link consoleOf} keeps, the most recent. */
const CONSOLE_KEPT = 50;
const consoles = new WeakMap<Page, string[]>();

/** The last console lines and uncaught errors of a page from {@link person}. */
export function consoleOf(page: Page): readonly string[] {
  return consoles.get(page) ?? [];
}

/** A new browser context (a person with their own storage) on the page. */
export async function person(browser: Browser, server: TestServer, viewport = { width: 1200, height: 800 }): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  const lines: string[] = [];
  consoles.set(page, lines);
  const keep = (line: string) => {
    lines.push(line);
    if (lines.length > CONSOLE_KEPT) lines.shift();
  };
  page.on("console", (m) => keep(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => keep(`uncaught: ${e.message}`));
  await page.goto(server.url + "/");
  return { context, page };
}

/** Saves a screenshot named `name` and returns its path. */
export async function shot(page: Page, name: string): Promise<string> {
  mkdirSync(SHOTS, { recursive: true });
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: false });
  return path;
}
