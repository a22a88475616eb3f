// Checks the committed bundle (web/dist, embedded in the server binary): it must be
// exactly what the sources build to with the locked dependencies, and its
// JavaScript must stay within the size budget once gzipped.
//
// Run from web/: `node scripts/check-bundle.mjs`. Exits 1 with the reason on failure.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

/** The JavaScript budget, gzipped (issue 16: at most 150 KiB). */
const BUDGET = 150 * 1024;

const committed = "dist";
const fresh = mkdtempSync(join(tmpdir(), "baatkaro-dist-"));
let failed = false;
try {
  execFileSync("npx", ["vite", "build", "--outDir", fresh, "--emptyOutDir", "--logLevel", "warn"], {
    stdio: "inherit",
  });
  const names = (dir) => readdirSync(dir).sort();
  const want = names(fresh);
  const have = names(committed);
  if (want.join() !== have.join()) {
    console.error(`web/dist holds ${have.join(", ")}; the sources build ${want.join(", ")}`);
    failed = true;
  }
  for (const name of want) {
    const built = readFileSync(join(fresh, name));
    let kept;
    try {
      kept = readFileSync(join(committed, name));
    } catch {
      continue;
    }
    if (!built.equals(kept)) {
      console.error(`web/dist/${name} differs from what the sources build`);
      failed = true;
    }
  }
  let gz = 0;
  for (const name of want.filter((n) => n.endsWith(".js"))) {
    gz += gzipSync(readFileSync(join(fresh, name)), { level: 9 }).length;
  }
  const kib = (gz / 1024).toFixed(1);
  if (gz > BUDGET) {
    console.error(`the bundle's JavaScript is ${kib} KiB gzipped, over the budget of ${BUDGET / 1024} KiB`);
    failed = true;
  } else {
    console.log(`bundle: ${kib} KiB of JavaScript gzipped (budget ${BUDGET / 1024} KiB)`);
  }
} finally {
  rmSync(fresh, { recursive: true, force: true });
}
if (failed) {
  console.error("rebuild with `npm run build` in web/ and commit web/dist");
  process.exit(1);
}
