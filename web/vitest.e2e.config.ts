// The end-to-end tests: a real server binary and Debian's headless Chromium,
// driven by playwright-core. Serial, and run after `cargo test` by ./test.sh, so
// that they do not compete with the Rust suite for the machine's cores.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["e2e/**/*.e2e.ts"],
    environment: "node",
    fileParallelism: false,
    sequence: { concurrent: false },
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
