// The tests read SPEC.md from disk; the project has no @types/node (and adds no
// dependency for one function), so the one signature they use is declared here.
declare module "node:fs" {
  /** Reads a whole file as text. */
  export function readFileSync(path: URL, encoding: "utf8"): string;
}
