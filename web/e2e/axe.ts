// axe-core, injected into a page, reporting the violations that matter.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import type { Page } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** One violation: its rule, impact and where. */
export interface Violation {
  id: string;
  impact: string | null;
  help: string;
  targets: string[];
}

/** The serious and critical accessibility violations of what `page` shows now. */
export async function seriousViolations(page: Page): Promise<Violation[]> {
  // Evaluated over the DevTools protocol: the page's own CSP allows no inline script.
  await page.evaluate(AXE);
  const found = await page.evaluate(async () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const axe = (window as any).axe;
    const result = await axe.run(document, { resultTypes: ["violations"] });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    return result.violations.map((v: any) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      targets: v.nodes.map((n: any) => String(n.target)),
    }));
  });
  return (found as Violation[]).filter((v) => v.impact === "serious" || v.impact === "critical");
}
