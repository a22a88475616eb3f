// Measurements of the web client in headless Chromium (not tests: they print
// figures for BENCHMARKS.md and assert nothing about speed). Run from web/:
//   npx vitest run --config vitest.measure.config.ts
// With PROFILE=1, where their time goes instead (bench/page.profile.ts).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [process.env.PROFILE ? "bench/**/*.profile.ts" : "bench/**/*.measure.ts"],
    environment: "node",
    fileParallelism: false,
    testTimeout: 900_000,
    hookTimeout: 900_000,
  },
});
