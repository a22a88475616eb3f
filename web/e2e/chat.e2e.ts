// The web client end to end: a real server, Debian's headless Chromium, and three
// people (alice, bob, carol) in their own browser contexts. One step per thing a
// person can do, each with a screenshot in web/e2e/screenshots/.
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";

import type { Browser, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { seriousViolations } from "./axe";
import { CLEAR_HOST, type TestServer, consoleOf, launchBrowser, person, shot, startServer } from "./harness";

let server: TestServer;
let browser: Browser;
const pages: Record<string, Page> = {};

/** How long a step waits for the page to show something. */
const SHOWN = { timeout: 10_000 };

beforeAll(async () => {
  // The page is also reached as http://chat.test:PORT (see CLEAR_HOST).
  server = await startServer(["--web-origin", `http://${CLEAR_HOST}`]);
  browser = await launchBrowser();
});

// A failed step leaves a screenshot of every page, to see what it showed, and
// prints each page's text and the server's recent log, for a run (CI's) whose
// screenshots are not kept.
afterEach(async (ctx) => {
  if (ctx.task.result?.state !== "fail") return;
  for (const [name, page] of Object.entries(pages)) {
    if (page.isClosed()) continue;
    await shot(page, `failed-${name}`).catch(() => undefined);
    const text = await page.locator("body").innerText({ timeout: 2_000 }).catch((e) => `(unread: ${e})`);
    console.error(`--- what ${name}'s page shows:\n${text}\n--- ${name}'s console:\n${consoleOf(page).join("\n")}`);
  }
  console.error(`--- the server's recent log:\n${server?.recentLog() ?? "(no server)"}`);
});

afterAll(async () => {
  await browser?.close();
  await server?.dispose();
});

async function register(name: string): Promise<Page> {
  const { page } = await person(browser, server);
  page.on("dialog", (d) => void d.accept());
  await page.getByRole("tab", { name: "Register" }).click();
  await page.getByLabel("User name").fill(name);
  await page.getByLabel("Password").fill(`pw-${name}-secret`);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("status").filter({ hasText: "online" }).waitFor(SHOWN);
  pages[name] = page;
  return page;
}

async function open(page: Page, conv: string): Promise<void> {
  const button = page.getByRole("navigation").getByRole("button", { name: new RegExp(`^${conv}`) });
  const already = (await button.getAttribute("aria-current", SHOWN)) === "page";
  await button.click();
  if (already) await page.getByRole("main").getByRole("heading", { name: conv }).waitFor(SHOWN);
  else await opened(page, conv);
}

/** Waits until `conv`, newly opened, is shown and its composer has taken the focus
 * (as it does when it comes up): text typed into another field before then could
 * land in the composer. */
async function opened(page: Page, conv: string): Promise<void> {
  await page.getByRole("main").getByRole("heading", { name: conv }).waitFor(SHOWN);
  const label = `Message ${conv}`;
  await page.waitForFunction((l) => document.activeElement?.getAttribute("aria-label") === l, label, SHOWN);
}

async function say(page: Page, conv: string, text: string): Promise<void> {
  const box = page.getByLabel(`Message ${conv}`);
  await box.fill(text);
  await box.press("Enter");
  // The page shows it once the server has stored it (it comes back as an event).
  await messages(page).getByText(text.split("\n").at(-1)!).first().waitFor(SHOWN);
}

function messages(page: Page) {
  return page.getByRole("log");
}

describe("the web client", () => {
  it("serves the log-in page with no serious accessibility violations", async () => {
    const { page } = await person(browser, server);
    await page.getByRole("heading", { name: "BaatKaro" }).waitFor(SHOWN);
    await shot(page, "01-login");
    expect(await seriousViolations(page)).toEqual([]);
    await page.context().close();
  });

  it("registers alice, bob and carol", async () => {
    for (const name of ["alice", "bob", "carol"]) await register(name);
    await shot(pages.alice!, "02-registered");
  });

  it("creates a group with a join rule", async () => {
    const alice = pages.alice!;
    await alice.getByRole("form", { name: "Create a group" }).getByLabel("Name").fill("rust");
    await alice.getByRole("form", { name: "Create a group" }).getByLabel("Who may join").selectOption("approval");
    await alice.getByRole("form", { name: "Create a group" }).getByRole("button", { name: "Create" }).click();
    await opened(alice, "#rust");
    await alice.getByText("owner").first().waitFor(SHOWN);
    await shot(alice, "03-group-created");
    expect(await seriousViolations(alice)).toEqual([]);
  });

  it("asks to join with a reason, and the owner sees it live and approves", async () => {
    const [alice, bob] = [pages.alice!, pages.bob!];
    const form = bob.getByRole("form", { name: "Join a group" });
    await form.getByLabel("Group").fill("rust");
    await form.getByLabel("Why (optional)").fill("I write Rust");
    await form.getByRole("button", { name: "Ask to join" }).click();
    await bob.getByText("#rust (waiting)").waitFor(SHOWN);
    await alice.getByText("I write Rust").waitFor(SHOWN);
    await shot(alice, "04-request-pushed");
    await alice.getByRole("button", { name: "Approve" }).click();
    await bob.getByRole("navigation").getByRole("button", { name: /^#rust/ }).waitFor(SHOWN);
    await alice.getByText("bob", { exact: true }).first().waitFor(SHOWN);
    await shot(bob, "05-approved");
  });

  it("sends messages, shows them live, and highlights a mention", async () => {
    const [alice, bob] = [pages.alice!, pages.bob!];
    await open(bob, "#rust");
    await say(bob, "#rust", "hello @alice, good morning");
    await open(alice, "#rust");
    await messages(alice).getByText("good morning").waitFor(SHOWN);
    await expect(alice.locator("article.mentioned mark").first().textContent()).resolves.toBe("@alice");
    await say(alice, "#rust", "first line\nsecond line");
    await messages(bob).getByText("second line").waitFor(SHOWN);
    await shot(alice, "06-messages-and-mention");
  });

  it("counts unread private messages in the sidebar", async () => {
    const [alice, bob] = [pages.alice!, pages.bob!];
    const form = alice.getByRole("form", { name: "Write to a user" });
    await form.getByLabel("User").fill("bob");
    await form.getByRole("button", { name: "Open" }).click();
    await say(alice, "@bob", "a private word");
    await bob.getByRole("navigation").getByLabel("1 unread").waitFor(SHOWN);
    await shot(bob, "07-private-unread");
    await open(bob, "@alice");
    await messages(bob).getByText("a private word").waitFor(SHOWN);
    // Opened where he left off: the new message comes after the line.
    await messages(bob).getByRole("separator").filter({ hasText: "new messages" }).waitFor(SHOWN);
  });

  it("notifies of a mention while the tab is hidden, with permission", async () => {
    const [alice, bob] = [pages.alice!, pages.bob!];
    await alice.context().grantPermissions(["notifications"]);
    // The tab is hidden (headless pages never are), and notifications are recorded.
    await alice.evaluate(() => {
      const shown: string[] = [];
      const w = window as unknown as { shown: string[]; Notification: unknown };
      w.shown = shown;
      class Recorded {
        static permission = "granted";
        static requestPermission = async () => "granted";
        onclick: (() => void) | null = null;
        constructor(title: string, options?: { body?: string }) {
          shown.push(`${title}: ${options?.body ?? ""}`);
        }
      }
      w.Notification = Recorded;
      Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
    });
    await open(bob, "#rust");
    await say(bob, "#rust", "are you there @alice?");
    await say(bob, "#rust", "nothing for her here");
    await alice.waitForFunction(() => (window as unknown as { shown: string[] }).shown.length > 0);
    const shown = await alice.evaluate(() => (window as unknown as { shown: string[] }).shown);
    expect(shown).toEqual(["bob in #rust: are you there @alice?"]);
    await alice.evaluate(() => {
      Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
      document.dispatchEvent(new Event("visibilitychange"));
    });
  });

  it("opens a conversation from the keyboard", async () => {
    const alice = pages.alice!;
    await alice.getByRole("navigation").getByRole("button", { name: /^#rust/ }).focus();
    await alice.keyboard.press("Enter");
    // The composer takes the focus: typing and Enter send.
    await opened(alice, "#rust");
    await alice.keyboard.type("typed without a mouse");
    await alice.keyboard.press("Enter");
    await messages(alice).getByText("typed without a mouse").waitFor(SHOWN);
  });

  it("invites, and the invited accepts", async () => {
    const [alice, carol] = [pages.alice!, pages.carol!];
    await open(alice, "#rust");
    const invite = alice.getByRole("form", { name: "Invite someone" });
    await invite.getByLabel("Invite").fill("carol");
    await invite.getByRole("button", { name: "Invite" }).click();
    await carol.getByRole("button", { name: "Accept" }).waitFor(SHOWN);
    await shot(carol, "08-invited");
    await carol.getByRole("button", { name: "Accept" }).click();
    await carol.getByRole("navigation").getByRole("button", { name: /^#rust/ }).waitFor(SHOWN);
  });

  it("promotes and demotes", async () => {
    const alice = pages.alice!;
    await alice.getByRole("button", { name: "actions for bob" }).click();
    await alice.getByRole("menuitem", { name: "Make admin" }).click();
    await alice.locator(".member", { hasText: "bob" }).getByText("admin").waitFor(SHOWN);
    await shot(alice, "09-promoted");
    await alice.getByRole("button", { name: "actions for bob" }).click();
    await alice.getByRole("menuitem", { name: "Make member" }).click();
    await alice.locator(".member", { hasText: "bob" }).getByText("member").waitFor(SHOWN);
  });

  it("kicks with a ban, shows the refusal plainly, and unbans", async () => {
    const [alice, carol] = [pages.alice!, pages.carol!];
    await alice.getByRole("button", { name: "actions for carol" }).click();
    await alice.getByRole("menuitem", { name: "Remove and ban" }).click();
    await carol.getByText("you were removed from rust by alice").waitFor(SHOWN);
    const form = carol.getByRole("form", { name: "Join a group" });
    await form.getByLabel("Group").fill("rust");
    await form.getByRole("button", { name: "Ask to join" }).click();
    await carol.getByRole("alert").filter({ hasText: "banned" }).waitFor(SHOWN);
    await shot(carol, "10-refusal-shown");
    await alice.getByRole("button", { name: "Show bans" }).click();
    await alice.getByRole("button", { name: "Unban" }).click();
    await alice.getByText("No one is banned.").waitFor(SHOWN);
  });

  it("offers the ownership, and the offeree accepts", async () => {
    const [alice, bob] = [pages.alice!, pages.bob!];
    await alice.getByRole("button", { name: "actions for bob" }).click();
    await alice.getByRole("menuitem", { name: "Offer ownership" }).click();
    await alice.getByText("Ownership offered to bob.").waitFor(SHOWN);
    await open(bob, "#rust");
    await bob.getByRole("button", { name: "Accept ownership" }).click();
    await bob.locator(".member", { hasText: "bob" }).getByText("owner").waitFor(SHOWN);
    await shot(bob, "11-new-owner");
  });

  it("changes the join rule and leaves", async () => {
    const [alice, bob] = [pages.alice!, pages.bob!];
    await bob.getByLabel("Who may join").last().selectOption("open");
    await messages(bob).getByText("set the join rule to open").waitFor(SHOWN);
    await alice.getByRole("button", { name: "Leave #rust" }).click();
    await messages(bob).getByText("alice left").waitFor(SHOWN);
    await shot(bob, "12-rule-and-leave");
  });

  it("declines an invitation, removes without a ban and cancels an ownership offer", async () => {
    const [alice, bob, carol] = [pages.alice!, pages.bob!, pages.carol!];
    const create = alice.getByRole("form", { name: "Create a group" });
    await create.getByLabel("Name").fill("go");
    await create.getByLabel("Who may join").selectOption("open");
    await create.getByRole("button", { name: "Create" }).click();
    await opened(alice, "#go");
    const invite = alice.getByRole("form", { name: "Invite someone" });
    await invite.getByLabel("Invite").fill("carol");
    await invite.getByRole("button", { name: "Invite" }).click();
    await carol.getByRole("button", { name: "Decline" }).click();
    await carol.getByRole("button", { name: "Decline" }).waitFor({ state: "detached", ...SHOWN });
    await shot(carol, "12a-declined");
    // An open group: bob is in at once; removed without a ban, he may come back.
    const join = bob.getByRole("form", { name: "Join a group" });
    await join.getByLabel("Group").fill("go");
    await join.getByRole("button", { name: "Ask to join" }).click();
    // Joined, he is shown the group: its composer takes the focus before he types again.
    await opened(bob, "#go");
    await alice.locator(".member", { hasText: "bob" }).waitFor(SHOWN);
    await alice.getByRole("button", { name: "actions for bob" }).click();
    await alice.getByRole("menuitem", { name: "Remove", exact: true }).click();
    await bob.getByText("you were removed from go by alice").waitFor(SHOWN);
    await join.getByLabel("Group").fill("go");
    await join.getByRole("button", { name: "Ask to join" }).click();
    await alice.locator(".member", { hasText: "bob" }).waitFor(SHOWN);
    await alice.getByRole("button", { name: "actions for bob" }).click();
    await alice.getByRole("menuitem", { name: "Offer ownership" }).click();
    await alice.getByText("Ownership offered to bob.").waitFor(SHOWN);
    await alice.getByRole("button", { name: "Cancel the offer" }).click();
    await alice.getByText("Ownership offered to bob.").waitFor({ state: "detached", ...SHOWN });
    await shot(alice, "12b-offer-cancelled");
  });

  it("has a dark theme", async () => {
    const alice = pages.alice!;
    await alice.getByRole("button", { name: "Settings" }).click();
    await alice.getByLabel("Theme").selectOption("dark");
    await expect(alice.evaluate(() => document.documentElement.dataset.theme)).resolves.toBe("dark");
    await alice.getByRole("button", { name: "Close" }).click();
    await open(alice, "#go");
    await shot(alice, "12c-dark");
    expect(await seriousViolations(alice)).toEqual([]);
  });

  it("fits a phone's width", async () => {
    const { context, page } = await person(browser, server, { width: 390, height: 844 });
    await page.getByRole("tab", { name: "Log in" }).click();
    await page.getByLabel("User name").fill("bob");
    await page.getByLabel("Password").fill("pw-bob-secret");
    await page.getByRole("button", { name: "Log in" }).last().click();
    await page.getByRole("status").filter({ hasText: "online" }).waitFor(SHOWN);
    await page.getByRole("button", { name: "Show conversations" }).click();
    await page.getByRole("navigation").getByRole("button", { name: /^#rust/ }).click();
    await messages(page).getByText("good morning").waitFor(SHOWN);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    expect(width).toBeLessThanOrEqual(390);
    await shot(page, "13-phone");
    expect(await seriousViolations(page)).toEqual([]);
    // Bob ends the phone's session from his desktop: the phone is signed out.
    const bob = pages.bob!;
    await bob.getByRole("button", { name: "Settings" }).click();
    await bob.getByText("this browser").waitFor(SHOWN);
    await bob.getByRole("button", { name: /^End session/ }).click();
    await page.getByRole("tab", { name: "Log in" }).waitFor(SHOWN);
    await shot(bob, "13-session-ended");
    await bob.getByRole("button", { name: "Close" }).click();
    await context.close();
  });

  it("reconnects after the server restarts and shows what was missed", async () => {
    const [bob, carol] = [pages.bob!, pages.carol!];
    // carol joins the now open group and looks elsewhere.
    const form = carol.getByRole("form", { name: "Join a group" });
    await form.getByLabel("Group").fill("rust");
    await form.getByRole("button", { name: "Ask to join" }).click();
    await carol.getByRole("navigation").getByRole("button", { name: /^#rust/ }).waitFor(SHOWN);
    await server.restart();
    await bob.getByRole("status").filter({ hasText: "online" }).waitFor({ timeout: 30_000 });
    await open(bob, "#rust");
    await say(bob, "#rust", "said while you were away");
    await carol.getByRole("status").filter({ hasText: "online" }).waitFor({ timeout: 30_000 });
    await open(carol, "#rust");
    await messages(carol).getByText("said while you were away").waitFor(SHOWN);
    await shot(carol, "14-after-restart");
  });

  it("uploads in one browser and downloads in another with the same SHA-256", async () => {
    const [bob, carol] = [pages.bob!, pages.carol!];
    const content = randomBytes(3 * 1024 * 1024 + 17);
    const sha = createHash("sha256").update(content).digest("hex");
    await bob.getByLabel("Share a file in #rust").setInputFiles({
      name: "photo.bin",
      mimeType: "application/octet-stream",
      buffer: content,
    });
    await messages(bob).getByRole("link", { name: "photo.bin" }).waitFor(SHOWN);
    await shot(bob, "15-uploaded");
    await messages(carol).getByRole("link", { name: "photo.bin" }).waitFor(SHOWN);
    await carol.getByRole("button", { name: "Files" }).click();
    const list = carol.getByRole("region", { name: "files in #rust" });
    await list.getByRole("link", { name: "photo.bin" }).waitFor(SHOWN);
    await shot(carol, "16-files-list");
    const [download] = await Promise.all([
      carol.waitForEvent("download"),
      list.getByRole("link", { name: "photo.bin" }).click(),
    ]);
    expect(download.suggestedFilename()).toBe("photo.bin");
    const saved = await download.path();
    expect(createHash("sha256").update(readFileSync(saved)).digest("hex")).toBe(sha);
  });

  it("resumes an upload after a reload when the same file is picked again", async () => {
    const bob = pages.bob!;
    const content = randomBytes(40 * 1024 * 1024);
    const file = { name: "big.bin", mimeType: "application/octet-stream", buffer: content };
    await bob.getByLabel("Share a file in #rust").setInputFiles(file);
    // Part of it is on the server: then the page goes away mid-upload.
    await bob.waitForFunction(() => {
      const p = document.querySelector<HTMLProgressElement>(".uploads progress");
      const uploading = p?.getAttribute("aria-label")?.includes("uploading") ?? false;
      // Well before the end, so that the reload comes first.
      return p !== null && uploading && p.value > 2 * 1024 * 1024 && p.value < p.max / 2;
    }, undefined, { timeout: 30_000 });
    await bob.reload();
    await bob.getByRole("status").filter({ hasText: "online" }).waitFor(SHOWN);
    // Every state the upload shows is kept: the rest may go by in a moment.
    await bob.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { seen: string[] }).seen = seen;
      new MutationObserver(() => {
        for (const s of document.querySelectorAll(".uploads li span")) seen.push(s.textContent ?? "");
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    await bob.getByLabel("Share a file in #rust").setInputFiles(file);
    await messages(bob).getByRole("link", { name: "big.bin" }).waitFor({ timeout: 60_000 });
    const seen = await bob.evaluate(() => (window as unknown as { seen: string[] }).seen);
    // Resumed, not restarted: the server held part of it already.
    expect(seen.some((s) => /big\.bin — uploading, resumed at \d/.test(s)), seen.join(" | ")).toBe(true);
    expect(await messages(bob).getByRole("link", { name: "big.bin" }).count()).toBe(1);
    await shot(bob, "17-resumed");
  });

  it("changes the password, lists sessions and logs out", async () => {
    const carol = pages.carol!;
    await carol.getByRole("button", { name: "Settings" }).click();
    await carol.getByLabel("Current password").fill("pw-carol-secret");
    await carol.getByLabel("New password").fill("pw-carol-better");
    await carol.getByRole("button", { name: "Change password" }).click();
    await carol.getByText("password changed").waitFor(SHOWN);
    await carol.getByText("this browser").waitFor(SHOWN);
    await shot(carol, "18-settings");
    expect(await seriousViolations(carol)).toEqual([]);
    await carol.getByRole("button", { name: "Log out" }).click();
    await carol.getByRole("tab", { name: "Log in" }).waitFor(SHOWN);
  });

  it("asks before sending a password where the page is reached in plain text beyond loopback", async () => {
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    const page = await context.newPage();
    const port = new URL(server.url).port;
    await page.goto(`http://${CLEAR_HOST}:${port}/`);
    await page.getByLabel("User name").fill("alice");
    await page.getByLabel("Password", { exact: true }).fill("pw-alice-secret");
    const consent = page.getByRole("checkbox", { name: /without encryption/ });
    await consent.waitFor(SHOWN);
    await page.getByRole("button", { name: "Log in" }).last().click();
    // Not ticked: the form is not sent, and nothing logged in.
    expect(await page.getByRole("status").filter({ hasText: "online" }).count()).toBe(0);
    await shot(page, "20-plain-text-consent");
    expect(await seriousViolations(page)).toEqual([]);
    await consent.check();
    await page.getByRole("button", { name: "Log in" }).last().click();
    await page.getByRole("status").filter({ hasText: "online" }).waitFor(SHOWN);
    // Allowed once for this host: a reload logs in with the kept token.
    await page.reload();
    await page.getByRole("status").filter({ hasText: "online" }).waitFor(SHOWN);
    await context.close();
  });

  it("deletes a group", async () => {
    const bob = pages.bob!;
    await bob.getByRole("button", { name: "Delete #rust" }).click();
    await bob.getByText("Pick a conversation, or create a group.").waitFor(SHOWN);
    await shot(bob, "19-deleted");
  });
});
