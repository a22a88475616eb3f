// The bundle is committed (web/dist) and embedded in the server binary, so its
// file names are fixed (no content hashes): the server names them at compile time
// and serves them with an ETag of their contents instead.
import { defineConfig } from "vitest/config";

export default defineConfig({
  base: "./",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // One script and one stylesheet: the whole client is small, and a fixed set of
    // files is what the server embeds.
    cssCodeSplit: false,
    modulePreload: false,
    rollupOptions: {
      output: {
        entryFileNames: "app.js",
        chunkFileNames: "app-[name].js",
        assetFileNames: "app[extname]",
        codeSplitting: false,
      },
    },
  },
  // `npx vite`: the page with live reload, its WebSocket and downloads passed on to a server on
  // the default web listener (started with --web-origin http://localhost:5173).
  server: {
    proxy: {
      "/ws": { target: "ws://127.0.0.1:7668", ws: true },
      "/files": { target: "http://127.0.0.1:7668" },
    },
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
