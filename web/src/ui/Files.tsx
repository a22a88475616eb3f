/**
 * Files in a conversation: uploads under way with their progress, and the list of
 * what was shared, each a link the browser's own download manager takes (the
 * server's `/files/` endpoint, SPEC.md 12.4).
 */

import { useEffect, useState } from "preact/hooks";

import type { Controller } from "../app/controller";
import type { Conv, StoredEvent } from "../proto/types";
import { size, time } from "./format";

export function Uploads({ controller, conv }: { controller: Controller; conv: Conv }) {
  const uploads = controller.uploads.value.filter((u) => u.conv === conv);
  if (uploads.length === 0) return null;
  return (
    <ul class="uploads" aria-label="uploads">
      {uploads.map((u) => {
        const p = u.progress;
        const label =
          p.phase === "hashing"
            ? "checking"
            : p.phase === "uploading"
              ? p.resumedFrom
                ? `uploading, resumed at ${size(p.resumedFrom)}`
                : "uploading"
              : p.phase === "done"
                ? "shared"
                : `failed: ${p.error ?? ""}`;
        return (
          <li key={u.id}>
            <span>
              {u.name} — {label}
            </span>
            <progress max={p.size || 1} value={p.phase === "done" ? p.size || 1 : p.done} aria-label={`${u.name} ${label}`} />
          </li>
        );
      })}
    </ul>
  );
}

export function FileList({ controller, conv }: { controller: Controller; conv: Conv }) {
  const [files, setFiles] = useState<StoredEvent[] | undefined>();
  const shared = controller.state.filesShared.value;
  useEffect(() => {
    let live = true;
    controller.files(conv).then(
      (f) => live && setFiles(f),
      () => live && setFiles([]),
    );
    return () => {
      live = false;
    };
  }, [conv, shared]);
  return (
    <section class="files" aria-label={`files in ${conv}`}>
      <h3>Files</h3>
      {files === undefined ? <p class="muted">loading…</p> : null}
      {files?.length === 0 ? <p class="muted">Nothing shared yet: drop a file on the conversation.</p> : null}
      <ul>
        {(files ?? []).map((f) =>
          f.verb === "FILE" ? (
            <li key={f.file}>
              <a href={`/files/${encodeURIComponent(f.file)}`} download={f.name}>
                {f.name}
              </a>{" "}
              <span class="muted">
                {size(f.size)}, {f.from}, {time(f.time)}
              </span>
            </li>
          ) : null,
        )}
      </ul>
    </section>
  );
}
