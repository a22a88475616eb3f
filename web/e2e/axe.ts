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
    // A node scrolled out of its scroll container's view is not shown: axe judges
    // the colours of a virtualised list's spare rows against whatever lies under
    // them on the page, so those are left out.
    const shown = (selector: string): boolean => {
      const el = document.querySelector(selector);
      if (!el) return true;
      const r = el.getBoundingClientRect();
      for (let a = el.parentElement; a; a = a.parentElement) {
        const style = getComputedStyle(a);
        if (!/(auto|scroll|hidden|clip)/.test(style.overflowY)) continue;
        const box = a.getBoundingClientRect();
        if (r.bottom <= box.top || r.top >= box.bottom) return false;
      }
      return true;
    };
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    return result.violations.flatMap((v: any) => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const nodes = v.nodes.filter((n: any) => shown(String(n.target)));
      if (nodes.length === 0) return [];
      return [{
        id: v.id,
        impact: v.impact,
        help: v.help,
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        targets: nodes.map((n: any) => `${String(n.target)}: ${n.failureSummary ?? ""}`),
      }];
    });
  });
  return (found as Violation[]).filter((v) => v.impact === "serious" || v.impact === "critical");
}
