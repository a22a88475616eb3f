// What the browser measurements share: a server whose group `big` holds MESSAGES
// stored messages (every seventh long enough to wrap), and alice's page logged in
// with that group open at its newest message.
import type { Page } from "playwright-core";

import { type TestServer, startServer } from "../e2e/harness";
import { Wire } from "../e2e/wire";

export const MESSAGES = Number(process.env.MESSAGES ?? 100_000);

/** A server (with a budget that lets one sender store MESSAGES quickly) holding `#big`. */
export async function serverWithBigGroup(): Promise<TestServer> {
  const server = await startServer(["--limit-rate", "1000000", "--limit-burst", "1000000"]);
  const alice = await Wire.open(server.tcp(), "alice", "pw-alice-secret", true);
  await alice.call({ verb: "CREATE", group: "big", rule: "open" });
  const started = Date.now();
  await alice.pipeline(
    (function* () {
      for (let i = 1; i <= MESSAGES; i++) {
        const text = i % 7 === 0 ? `message ${i}: a longer one that wraps onto a second line on a narrow screen, to vary the heights` : `message ${i}`;
        yield { verb: "SEND" as const, to: "#big" as const, key: `m${i}`, text };
      }
    })(),
  );
  console.log(`stored ${MESSAGES} messages in ${Date.now() - started} ms`);
  alice.close();
  return server;
}

/** Logs `page` in as alice and opens `#big`, until its newest message shows. */
export async function openBigGroup(page: Page, server: TestServer): Promise<void> {
  await page.goto(server.url + "/");
  await page.getByLabel("User name").fill("alice");
  await page.getByLabel("Password").fill("pw-alice-secret");
  await page.getByRole("button", { name: "Log in" }).last().click();
  await page.getByRole("navigation").getByRole("button", { name: /^#big/ }).click();
  await newestShown(page);
}

/** Waits until the newest message of `#big` shows. */
export async function newestShown(page: Page): Promise<void> {
  await page.getByRole("log").getByText(`message ${MESSAGES}`, { exact: false }).first().waitFor({ timeout: 30_000 });
}
