/**
 * Writing a message: Enter sends, Shift+Enter starts a new line. What is typed
 * while disconnected is sent when the link is back (SEND is idempotent); the draft
 * is kept per conversation.
 */

import { signal } from "@preact/signals";
import { useEffect, useRef, useState } from "preact/hooks";

import type { Controller } from "../app/controller";
import type { Conv } from "../proto/types";
import { toWire } from "./format";

const drafts = new Map<Conv, string>();

/** Bumped when a refused message is put back into its conversation's draft, so
 * that the composer showing that conversation (perhaps mounted since) picks it up. */
const restored = signal(0);

export function Composer({ controller, conv }: { controller: Controller; conv: Conv }) {
  const [text, setText] = useState(drafts.get(conv) ?? "");
  const [sending, setSending] = useState(0);
  const area = useRef<HTMLTextAreaElement>(null);
  const max = controller.state.server.value?.limits.message;

  useEffect(() => {
    setText(drafts.get(conv) ?? "");
    area.current?.focus();
  }, [conv]);

  // A refused message of this conversation came back: shown, unless a new one is
  // being typed.
  const back = restored.value;
  useEffect(() => {
    const draft = drafts.get(conv);
    if (back > 0 && draft) setText((now) => now || draft);
  }, [back]);

  const send = async () => {
    const body = text.trim();
    if (!body) return;
    setText("");
    drafts.delete(conv);
    setSending((n) => n + 1);
    const ok = await controller.send(conv, toWire(body));
    setSending((n) => n - 1);
    // Refused: the text comes back to its own conversation's draft (this composer
    // belongs to one conversation), so that nothing typed is lost.
    if (!ok && !drafts.get(conv)) {
      drafts.set(conv, body);
      restored.value += 1;
    }
  };

  const tooLong = max !== undefined && new TextEncoder().encode(toWire(text)).length > max;
  return (
    <form
      class="composer"
      aria-label="Write a message"
      onSubmit={(e) => {
        e.preventDefault();
        void send();
      }}
    >
      <textarea
        ref={area}
        aria-label={`Message ${conv}`}
        placeholder={`Message ${conv}`}
        rows={2}
        value={text}
        onInput={(e) => {
          setText(e.currentTarget.value);
          drafts.set(conv, e.currentTarget.value);
        }}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            void send();
          }
        }}
      />
      <div class="composer-buttons">
        <label class="attach">
          <span>Attach</span>
          <input
            type="file"
            aria-label={`Share a file in ${conv}`}
            onChange={(e) => {
              const input = e.currentTarget;
              for (const f of Array.from(input.files ?? [])) void controller.share(conv, f);
              input.value = "";
            }}
          />
        </label>
        <button type="submit" disabled={tooLong || !text.trim()}>
          Send
        </button>
      </div>
      {tooLong ? (
        <p class="error" role="alert">
          Too long: at most {max} bytes.
        </p>
      ) : null}
      {sending > 0 ? (
        <p class="muted" role="status">
          sending…
        </p>
      ) : null}
    </form>
  );
}
