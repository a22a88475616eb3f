/**
 * The page: the log-in view, or the chat — the conversations, the one open, its
 * details — with the link's status and the notices above them.
 */

import { useEffect, useState } from "preact/hooks";

import type { Controller } from "../app/controller";
import { groupOf } from "../app/controller";
import { AuthView } from "./AuthView";
import { Composer } from "./Composer";
import { FileList, Uploads } from "./Files";
import { GroupPanel } from "./GroupPanel";
import { MessageList } from "./MessageList";
import { Settings } from "./Settings";
import { Sidebar } from "./Sidebar";

export function App({ controller }: { controller: Controller }) {
  const s = controller.state;
  if (!s.me.value) {
    return (
      <>
        <Notices controller={controller} />
        <AuthView controller={controller} />
      </>
    );
  }
  return <Shell controller={controller} />;
}

/** Which part a phone-width screen shows. */
type Pane = "list" | "chat" | "details" | "settings";

function Shell({ controller }: { controller: Controller }) {
  const s = controller.state;
  const current = s.current.value;
  const group = groupOf(current);
  const [pane, setPane] = useState<Pane>(current ? "chat" : "list");
  const [details, setDetails] = useState(true);
  const [showFiles, setShowFiles] = useState(false);
  const [dragging, setDragging] = useState(false);
  const conv = current ? s.conversation(current) : undefined;

  return (
    <div class={`shell pane-${pane}`}>
      <header class="top">
        <button type="button" class="narrow-only" onClick={() => setPane("list")} aria-label="Show conversations">
          ☰
        </button>
        <h1>BaatKaro</h1>
        <Status controller={controller} />
        <span class="me" aria-label="logged in as">
          {s.me.value}
        </span>
        <button type="button" onClick={() => setPane(pane === "settings" ? "chat" : "settings")} aria-expanded={pane === "settings"}>
          Settings
        </button>
      </header>
      <Notices controller={controller} />
      <Sidebar controller={controller} onOpen={() => setPane("chat")} />
      {pane === "settings" ? (
        <Settings controller={controller} onClose={() => setPane(current ? "chat" : "list")} />
      ) : (
        <main class="chat" aria-label={current ? `conversation ${current}` : "no conversation"}>
          {conv && current ? (
            <>
              <header class="chat-head">
                <h2>{current}</h2>
                <button type="button" onClick={() => setShowFiles(!showFiles)} aria-expanded={showFiles}>
                  Files
                </button>
                {group ? (
                  <button
                    type="button"
                    onClick={() => {
                      setDetails(!details);
                      setPane(pane === "details" ? "chat" : "details");
                    }}
                    aria-expanded={details}
                  >
                    Members
                  </button>
                ) : null}
              </header>
              <div
                class={dragging ? "drop dragging" : "drop"}
                onDragOver={(e) => {
                  e.preventDefault();
                  setDragging(true);
                }}
                onDragLeave={() => setDragging(false)}
                onDrop={(e) => {
                  e.preventDefault();
                  setDragging(false);
                  for (const f of Array.from(e.dataTransfer?.files ?? [])) void controller.share(current, f);
                }}
              >
                <MessageList key={current} controller={controller} conv={conv} />
                {showFiles ? <FileList controller={controller} conv={current} /> : null}
              </div>
              <Uploads controller={controller} conv={current} />
              <Composer key={current} controller={controller} conv={current} />
            </>
          ) : (
            <p class="empty">Pick a conversation, or create a group.</p>
          )}
        </main>
      )}
      {group && details && s.roleIn(group) && pane !== "settings" ? (
        <GroupPanel controller={controller} group={group} />
      ) : null}
    </div>
  );
}

function Status({ controller }: { controller: Controller }) {
  const status = controller.state.status.value;
  const [, tick] = useState(0);
  useEffect(() => {
    if (status.state !== "waiting") return;
    const t = setInterval(() => tick((n) => n + 1), 1000);
    return () => clearInterval(t);
  }, [status]);
  switch (status.state) {
    case "online":
      return (
        <span class="status online" role="status">
          online
        </span>
      );
    case "connecting":
      return (
        <span class="status" role="status">
          connecting…
        </span>
      );
    case "waiting": {
      const secs = Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000));
      return (
        <span class="status down" role="status">
          disconnected ({status.reason}); retrying in {secs} s{" "}
          <button type="button" onClick={() => controller.link.reconnectNow(true)}>
            Retry now
          </button>
        </span>
      );
    }
    case "signed-out":
      return null;
  }
}

function Notices({ controller }: { controller: Controller }) {
  const notices = controller.state.notices.value;
  useEffect(() => {
    if (notices.length === 0) return;
    // Each notice keeps its own time, however many come after it.
    const next = notices.reduce((a, b) => (a.until <= b.until ? a : b));
    const t = setTimeout(() => controller.state.dismiss(next.id), Math.max(0, next.until - Date.now()));
    return () => clearTimeout(t);
  }, [notices]);
  return (
    <div class="notices" aria-live="polite">
      {notices.map((n) => (
        <p key={n.id} class={`notice ${n.tone}`} role={n.tone === "error" ? "alert" : "status"}>
          {n.text}
          <button type="button" aria-label="dismiss" onClick={() => controller.state.dismiss(n.id)}>
            ×
          </button>
        </p>
      ))}
    </div>
  );
}
