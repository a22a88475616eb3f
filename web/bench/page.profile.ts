// Where the time of bench/page.measure.ts goes (issue 16), printed for BENCHMARKS.md:
// - a Chrome trace (timeline events and V8's sampled profile) of one returning load,
//   its main-thread tasks and WebSocket traffic, and of the 600-frame scroll, each
//   frame over LONG_MS (35) broken down into the main thread's work by event and
//   the script's by function (the traces are left in $TRACE_OUT-{load,scroll}.json
//   for chrome://tracing or Perfetto);
// - the milestones of nine untraced returning loads by the page's clock (HTML,
//   app.js, the socket, each message sent and received, the newest message shown);
// - the server's own answer times for the same requests over TCP and over a
//   WebSocket from Node (the WebSocket part needs Node 22, or Node 20 with
//   NODE_OPTIONS=--experimental-websocket).
// Tracing costs the page time: its figures are for where the time goes, not for how
// much there is. Run from web/:
//   PROFILE=1 BAATKARO_SERVER=... npx vitest run --config vitest.measure.config.ts
// (CATEGORIES=a,b,… sets the trace's categories.)
import { writeFileSync } from "node:fs";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, it } from "vitest";

import { type TestServer, launchBrowser } from "../e2e/harness";
import { Wire } from "../e2e/wire";
import { MESSAGES, newestShown, openBigGroup, serverWithBigGroup } from "./big";

const OUT = process.env.TRACE_OUT ?? "/tmp/webperf-trace";
const LONG = Number(process.env.LONG_MS ?? 35);

let server: TestServer;
let browser: Browser;

beforeAll(async () => {
  server = await serverWithBigGroup();
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await server?.dispose();
});

const CATEGORIES = (process.env.CATEGORIES ?? [
  "devtools.timeline",
  "disabled-by-default-devtools.timeline",
  "disabled-by-default-devtools.timeline.frame",
  "blink.user_timing",
  "v8.execute",
  "disabled-by-default-v8.cpu_profiler",
  "toplevel",
  "loading",
  "netlog",
  "disabled-by-default-netlog",
].join(","));

interface TraceEvent {
  name: string;
  cat: string;
  ph: string;
  ts: number;
  dur?: number;
  tdur?: number;
  pid: number;
  tid: number;
  args?: any;
  id?: string;
}

async function trace<T>(page: Page, path: string, body: () => Promise<T>): Promise<{ result: T; events: TraceEvent[] }> {
  await browser.startTracing(page, { categories: CATEGORIES.split(",") });
  const result = await body();
  const buf = await browser.stopTracing();
  writeFileSync(path, buf);
  const json = JSON.parse(buf.toString("utf8"));
  return { result, events: (json.traceEvents ?? json) as TraceEvent[] };
}

/** The renderer's main thread: the one that ran the marks. */
function mainThread(events: TraceEvent[], mark: string): { pid: number; tid: number } {
  const m = events.find((e) => e.name === mark);
  if (!m) throw new Error(`no ${mark} in trace`);
  return { pid: m.pid, tid: m.tid };
}

function threadNames(events: TraceEvent[]): Map<string, string> {
  const names = new Map<string, string>();
  for (const e of events) if (e.ph === "M" && e.name === "thread_name") names.set(`${e.pid}:${e.tid}`, e.args.name);
  return names;
}

/** V8 samples from the trace's Profile/ProfileChunk events: [ts, stack of function names]. */
function samples(events: TraceEvent[], pid: number): Array<{ ts: number; stack: string[] }> {
  const nodes = new Map<number, { name: string; url: string; line: number; parent?: number }>();
  const out: Array<{ ts: number; stack: string[] }> = [];
  let t = 0;
  for (const e of events) {
    if (e.pid !== pid) continue;
    if (e.name === "Profile") t = e.args.data.startTime;
    if (e.name !== "ProfileChunk") continue;
    const d = e.args.data;
    for (const n of d.cpuProfile?.nodes ?? []) {
      nodes.set(n.id, { name: n.callFrame.functionName || "(anon)", url: n.callFrame.url ?? "", line: n.callFrame.lineNumber, parent: n.parent });
    }
    const ids: number[] = d.cpuProfile?.samples ?? [];
    const deltas: number[] = d.timeDeltas ?? [];
    for (let i = 0; i < ids.length; i++) {
      t += deltas[i] ?? 0;
      const stack: string[] = [];
      let id: number | undefined = ids[i];
      let guard = 0;
      while (id !== undefined && guard++ < 200) {
        const n = nodes.get(id);
        if (!n) break;
        stack.push(n.url ? `${n.name}@${n.line}` : n.name);
        id = n.parent;
      }
      out.push({ ts: t, stack });
    }
  }
  return out;
}

/** Self time by event name of the main thread's complete events in [a, b]. */
function breakdown(events: TraceEvent[], pid: number, tid: number, a: number, b: number): Map<string, number> {
  const xs = events
    .filter((e) => e.pid === pid && e.tid === tid && e.ph === "X" && e.dur !== undefined && e.ts < b && e.ts + e.dur! > a)
    .sort((x, y) => x.ts - y.ts || y.dur! - x.dur!);
  // Self time: an event's duration less its children's (nested by time).
  const self = new Map<string, number>();
  const stack: TraceEvent[] = [];
  const selfOf = new Map<TraceEvent, number>();
  for (const e of xs) {
    while (stack.length && stack.at(-1)!.ts + stack.at(-1)!.dur! <= e.ts) stack.pop();
    const clip = Math.max(0, Math.min(b, e.ts + e.dur!) - Math.max(a, e.ts));
    selfOf.set(e, (selfOf.get(e) ?? 0) + clip);
    const parent = stack.at(-1);
    if (parent) selfOf.set(parent, (selfOf.get(parent) ?? 0) - clip);
    stack.push(e);
  }
  for (const [e, v] of selfOf) self.set(e.name, (self.get(e.name) ?? 0) + v);
  return self;
}

function fmt(m: Map<string, number>, min = 0.3): string {
  return [...m]
    .filter(([, v]) => v / 1000 >= min)
    .sort((x, y) => y[1] - x[1])
    .map(([k, v]) => `${k} ${(v / 1000).toFixed(1)}`)
    .join(", ");
}

/** Samples in [a, b] by the topmost frame of our code (app.js), else the leaf. */
function jsBreakdown(s: Array<{ ts: number; stack: string[] }>, a: number, b: number): Map<string, number> {
  const m = new Map<string, number>();
  const inWin = s.filter((x) => x.ts >= a && x.ts < b);
  for (let i = 0; i < inWin.length; i++) {
    const x = inWin[i]!;
    const dt = (inWin[i + 1]?.ts ?? b) - x.ts;
    const leaf = x.stack[0] ?? "?";
    if (leaf === "(idle)" || leaf === "(program)" || leaf === "(root)") continue;
    // leaf plus two callers, to say who.
    const key = x.stack.slice(0, 3).join(" < ");
    m.set(key, (m.get(key) ?? 0) + Math.min(dt, 2000));
  }
  return m;
}

it("traces a returning load and the scroll", async () => {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  await openBigGroup(page, server);
  // Warm: two loads untraced.
  for (let r = 0; r < 2; r++) {
    await page.goto(server.url + "/");
    await newestShown(page);
  }

  // One traced load.
  const load = await trace(page, `${OUT}-load.json`, async () => {
    const t0 = Date.now();
    await page.goto(server.url + "/");
    await page.getByLabel("Message #big").waitFor();
    await newestShown(page);
    const wall = Date.now() - t0;
    const timing = await page.evaluate(() => {
      const nav = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming;
      const res = performance.getEntriesByType("resource").map((r) => `${r.name.replace(/^.*\//, "")} ${r.startTime.toFixed(1)}-${(r as PerformanceResourceTiming).responseEnd.toFixed(1)}`);
      return { nav: { responseEnd: nav.responseEnd, domInteractive: nav.domInteractive, dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd }, res, now: performance.now() };
    });
    return { wall, timing };
  });
  console.log("LOAD", JSON.stringify(load.result));
  {
    const ev = load.events;
    const names = threadNames(ev);
    const nav = ev.filter((e) => e.name === "navigationStart" || e.name === "NavigationBodyLoader::StartLoadingBody" || e.name === "markDOMContent" || e.name === "ResourceSendRequest" || e.name === "ResourceReceiveResponse" || e.name === "ResourceFinish");
    const t0 = Math.min(...ev.filter((e) => e.name === "navigationStart").map((e) => e.ts));
    // main thread of the new renderer: the thread named CrRendererMain with most events after t0
    const counts = new Map<string, number>();
    for (const e of ev) if (e.ts >= t0 && names.get(`${e.pid}:${e.tid}`) === "CrRendererMain") counts.set(`${e.pid}:${e.tid}`, (counts.get(`${e.pid}:${e.tid}`) ?? 0) + 1);
    const [key] = [...counts].sort((a, b) => b[1] - a[1])[0]!;
    const [pid, tid] = key.split(":").map(Number) as [number, number];
    const rel = (t: number) => ((t - t0) / 1000).toFixed(1);
    for (const e of nav.slice(0, 40)) console.log(`  ${rel(e.ts)} ${e.name} ${e.args?.data?.url ?? ""}`);
    const top = ev
      .filter((e) => e.pid === pid && e.tid === tid && e.ph === "X" && e.ts >= t0 && (e.dur ?? 0) > 1000)
      .sort((a, b) => a.ts - b.ts);
    // Outermost only.
    let end = 0;
    for (const e of top) {
      if (e.ts < end) continue;
      end = e.ts + e.dur!;
      const kids = ev.filter((k) => k.pid === pid && k.tid === tid && k.ph === "X" && k.ts >= e.ts && k.ts < e.ts + e.dur! && k !== e && (k.dur ?? 0) > 200 && !/RunTask|mojo/.test(k.name));
      console.log(`  main ${rel(e.ts)}+${(e.dur! / 1000).toFixed(1)} ${kids.slice(0, 6).map((k) => `${k.name}(${(k.dur! / 1000).toFixed(1)}${k.args?.data?.type ? " " + k.args.data.type : ""})`).join(" ")}`);
    }
    const ws = ev.filter((e) => /WebSocket/.test(e.name));
    for (const e of ws) console.log(`  ${rel(e.ts)} ${e.name}`);
    console.log("  main self by name:", fmt(breakdown(ev, pid, tid, t0, t0 + load.result.wall * 1000)));
    console.log("  js:", fmt(jsBreakdown(samples(ev, pid), t0, t0 + load.result.wall * 1000), 0.5));
  }

  // The scroll, traced, with a mark per frame.
  const scroll = await trace(page, `${OUT}-scroll.json`, () =>
    page.evaluate(async (steps: number) => {
      const el = document.querySelector<HTMLElement>(".messages")!;
      const durations: number[] = [];
      let last = performance.now();
      performance.mark("frame-0");
      for (let i = 0; i < steps; i++) {
        el.scrollTop = Math.max(0, el.scrollTop - el.clientHeight);
        await new Promise(requestAnimationFrame);
        const now = performance.now();
        performance.mark(`frame-${i + 1}`);
        durations.push(now - last);
        last = now;
      }
      return durations;
    }, 600),
  );
  const durations = scroll.result;
  const ev = scroll.events;
  const { pid, tid } = mainThread(ev, "frame-0");
  const marks = new Map<string, number>();
  for (const e of ev) if (e.pid === pid && e.name.startsWith("frame-")) marks.set(e.name, e.ts);
  const s = samples(ev, pid);
  const sorted = [...durations].slice(1).sort((a, b) => a - b);
  console.log(`SCROLL p50 ${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)} p99 ${sorted[Math.floor(sorted.length * 0.99)]!.toFixed(1)} max ${sorted.at(-1)!.toFixed(1)} over50 ${sorted.filter((x) => x > 50).length}`);
  const names = threadNames(ev);
  // Totals over all frames, and per long frame.
  const all = breakdown(ev, pid, tid, marks.get("frame-0")!, marks.get(`frame-${durations.length}`)!);
  console.log("  all frames, main self (ms):", fmt(all, 5));
  console.log("  all frames, js (ms):", fmt(jsBreakdown(s, marks.get("frame-0")!, marks.get(`frame-${durations.length}`)!), 5));
  // Other threads' busy time over the whole scroll.
  const busy = new Map<string, number>();
  for (const e of ev) {
    if (e.ph !== "X" || e.pid !== pid || e.tid === tid) continue;
    const n = names.get(`${e.pid}:${e.tid}`) ?? String(e.tid);
    if (e.ts >= marks.get("frame-0")! && e.ts < marks.get(`frame-${durations.length}`)!) busy.set(`${n}:${e.name}`, (busy.get(`${n}:${e.name}`) ?? 0) + (e.dur ?? 0));
  }
  console.log("  other threads (ms, inclusive):", fmt(busy, 20));
  for (let i = 0; i < durations.length; i++) {
    if (durations[i]! < LONG) continue;
    const a = marks.get(`frame-${i}`)!;
    const b = marks.get(`frame-${i + 1}`)!;
    console.log(`  frame ${i + 1}: ${durations[i]!.toFixed(1)} ms; main: ${fmt(breakdown(ev, pid, tid, a, b))}`);
    console.log(`     js: ${fmt(jsBreakdown(s, a, b), 0.5)}`);
    const other = new Map<string, number>();
    for (const e of ev) {
      if (e.ph !== "X" || e.pid !== pid || e.tid === tid || e.ts >= b || e.ts + (e.dur ?? 0) <= a) continue;
      const n = names.get(`${e.pid}:${e.tid}`) ?? String(e.tid);
      if (/RasterTask|TileManager|Draw|Commit|Activat|PrepareToDraw/.test(e.name)) other.set(`${n}:${e.name}`, (other.get(`${n}:${e.name}`) ?? 0) + Math.min(b, e.ts + e.dur!) - Math.max(a, e.ts));
    }
    console.log(`     other: ${fmt(other, 1)}`);
  }
  await context.close();
});

it("breaks down a returning load", async () => {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  // Milestones by the page's clock, kept in sessionStorage-free globals and read after.
  await context.addInitScript((target: string) => {
    const w = window as any;
    const t: Record<string, number> = {};
    w.__t = t;
    const at = (k: string) => {
      if (!(k in t)) t[k] = performance.now();
    };
    const Real = WebSocket;
    let n = 0;
    w.WebSocket = class extends Real {
      constructor(url: string | URL, p?: string | string[]) {
        super(url, p);
        at("ws.create");
        this.addEventListener("open", () => at("ws.open"));
        this.addEventListener("message", () => at(`ws.msg${++n}`));
        const send = this.send.bind(this);
        let s = 0;
        this.send = (d: any) => {
          at(`ws.send${++s}`);
          send(d);
        };
      }
    };
    new MutationObserver(() => {
      if (!("app" in t) && document.querySelector(".shell")) at("app");
      if (!("log" in t) && document.querySelector('[role="log"]')) at("log");
      if (!("shown" in t) && document.querySelector(`[data-seq="${target}"]`)) at("shown");
    }).observe(document, { subtree: true, childList: true, characterData: true });
  }, String(MESSAGES));
  const page = await context.newPage();
  await openBigGroup(page, server);
  const rows: Record<string, number>[] = [];
  for (let r = 0; r < 9; r++) {
    const t0 = Date.now();
    await page.goto(server.url + "/");
    await page.getByLabel("Message #big").waitFor();
    await newestShown(page);
    const wall = Date.now() - t0;
    const m = await page.evaluate(() => {
      const nav = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming;
      const js = performance.getEntriesByType("resource").find((r) => r.name.endsWith("app.js")) as PerformanceResourceTiming;
      return { origin: performance.timeOrigin, fetchStart: nav.fetchStart, requestStart: nav.requestStart, responseEnd: nav.responseEnd, jsStart: js.startTime, jsEnd: js.responseEnd, domInteractive: nav.domInteractive, ...(window as any).__t };
    });
    const row: Record<string, number> = { "nav(node→origin)": m.origin - t0 };
    for (const [k, v] of Object.entries(m)) if (k !== "origin") row[k] = v as number;
    row["wall"] = wall;
    rows.push(row);
  }
  const keys = Object.keys(rows[0]!);
  for (const k of keys) {
    const xs = rows.map((r) => r[k]).filter((x): x is number => x !== undefined).sort((a, b) => a - b);
    console.log(`  ${k.padEnd(18)} median ${xs[Math.floor(xs.length / 2)]!.toFixed(1)}  (${xs.map((x) => x.toFixed(0)).join(" ")})`);
  }
  await context.close();
});

it("times the server's answers over TCP", async () => {
  const w = await Wire.open(server.tcp(), "alice", "pw-alice-secret");
  const tok = (await w.call({ verb: "TOKEN", label: "t" })) as any;
  const token = tok.reply.token as number;
  const secret = tok.reply.secret as string;
  const times = new Map<string, number[]>();
  const time = async (k: string, f: () => Promise<unknown>) => {
    const t = performance.now();
    await f();
    const list = times.get(k) ?? [];
    list.push(performance.now() - t);
    times.set(k, list);
  };
  for (let i = 0; i < 15; i++) {
    await time("PING", () => w.call({ verb: "PING" }));
    await time("GROUPS", () => w.call({ verb: "GROUPS", offers: true }));
    await time("CONVERSATIONS", () => w.call({ verb: "CONVERSATIONS", read: true }));
    await time("HISTORY last 200", () => w.call({ verb: "HISTORY", conv: "#big", range: "last", limit: 200 }));
    await time("MEMBERS", () => w.call({ verb: "MEMBERS", group: "big" }));
    await time("REQUESTS", () => w.call({ verb: "REQUESTS", group: "big" }));
    await time("connect+HELLO+AUTH", async () => {
      const { Socket } = await import("node:net");
      const { ClientSession } = await import("../src/proto/session");
      const [host, port] = server.tcp().split(":");
      const s = new Socket();
      await new Promise<void>((ok) => s.connect(Number(port), host ?? "127.0.0.1", () => ok()));
      const sess = new ClientSession();
      const h = sess.send({ verb: "HELLO", versions: [1], software: "x" });
      const a = sess.send({ verb: "AUTH", user: "alice", token, secret });
      s.write(h.bytes);
      s.write(a.bytes);
      await new Promise<void>((ok) => {
        let n = 0;
        s.on("data", (c: Buffer) => {
          for (const o of sess.receive(new Uint8Array(c))) if (o.kind === "answer" && ++n === 2) ok();
        });
      });
      s.destroy();
    });
  }
  printMedians("tcp ", times);
  w.close();
});

/** Medians of each list of times, printed one line each. */
function printMedians(prefix: string, times: Map<string, number[]>): void {
  for (const [k, v] of times) {
    const s = [...v].sort((a, b) => a - b);
    console.log(`  ${prefix}${k.padEnd(22)} median ${s[Math.floor(s.length / 2)]!.toFixed(2)} ms (min ${s[0]!.toFixed(2)}, max ${s.at(-1)!.toFixed(2)})`);
  }
}

it.skipIf(typeof (globalThis as { WebSocket?: unknown }).WebSocket === "undefined")("times the server's answers over WebSocket", async () => {
  const { SUBPROTOCOL } = await import("../src/proto/web");
  const { ClientSession } = await import("../src/proto/session");
  const w = await Wire.open(server.tcp(), "alice", "pw-alice-secret");
  const tok = (await w.call({ verb: "TOKEN", label: "t" })) as any;
  w.close();
  const times = new Map<string, number[]>();
  const note = (k: string, ms: number) => times.set(k, [...(times.get(k) ?? []), ms]);
  for (let i = 0; i < 12; i++) {
    // A new connection each time, as a page makes: open, then HELLO and AUTH at once.
    const sess = new ClientSession();
    const t0 = performance.now();
    const ws = new (globalThis as any).WebSocket(server.url.replace("http", "ws") + "/ws", SUBPROTOCOL);
    ws.binaryType = "arraybuffer";
    const waiting = new Map<string, () => void>();
    ws.onmessage = (m: any) => {
      for (const o of sess.receive(new Uint8Array(m.data))) if (o.kind === "answer") waiting.get(o.tag)?.();
    };
    await new Promise((ok, fail) => {
      ws.onopen = ok;
      ws.onerror = fail;
    });
    const call = (c: any) => {
      const sent = sess.send(c);
      return new Promise<void>((ok) => {
        waiting.set(sent.tag, ok);
        ws.send(sent.bytes);
      });
    };
    const t1 = performance.now();
    note("open", t1 - t0);
    await Promise.all([call({ verb: "HELLO", versions: [1], software: "x" }), call({ verb: "AUTH", user: "alice", token: tok.reply.token, secret: tok.reply.secret })]);
    note("HELLO+AUTH", performance.now() - t1);
    for (const [k, c] of [
      ["PING", { verb: "PING" }],
      ["HISTORY last 200", { verb: "HISTORY", conv: "#big", range: "last", limit: 200 }],
      ["catch-up (3 at once)", null],
    ] as const) {
      const t = performance.now();
      if (c) await call(c);
      else await Promise.all([call({ verb: "HISTORY", conv: "#big", range: "last", limit: 200 }), call({ verb: "GROUPS", offers: true }), call({ verb: "CONVERSATIONS", read: true })]);
      note(k, performance.now() - t);
    }
    ws.close();
  }
  printMedians("ws ", times);
});
