/**
 * A conversation's history, virtualised: the sequence numbers from the oldest kept
 * to the newest, in blocks of {@link BLOCK}; only the blocks in view (and one
 * around them) are in the page, and each block's events are fetched from the
 * server when it comes into view. A conversation of 100,000 messages costs what a
 * screenful does.
 *
 * Blocks rather than single rows: every row measured at its real height makes the
 * virtualiser recompute the positions after it, which over 100,000 rows takes
 * longer than a frame; over 2,000 blocks it does not.
 */

import {
  Virtualizer,
  elementScroll,
  measureElement,
  observeElementOffset,
  observeElementRect,
} from "@tanstack/virtual-core";
import { Component } from "preact";
import { useEffect, useLayoutEffect, useReducer, useRef, useState } from "preact/hooks";

import type { Controller } from "../app/controller";
import type { Conversation } from "../app/state";
import type { StoredEvent } from "../proto/types";
import { splitMentions } from "../app/mention";
import { LINE_SEPARATOR, describeEvent, hue, size, time } from "./format";

/** Sequence numbers per block. */
export const BLOCK = 10;

/** A block's height before it is measured: about a row each. */
const BLOCK_ESTIMATE_PX = BLOCK * 44;

/** Rows that are close to the bottom count as "at the bottom". */
const BOTTOM_SLACK_PX = 48;

/**
 * The virtualiser of `count` blocks, first drawn at the start of block `openAt`, or
 * at the end of the list if `openAt` is undefined.
 */
function useVirtualizer(count: number, openAt: number | undefined, scroller: () => HTMLElement | null) {
  const [, rerender] = useReducer((n: number) => n + 1, 0);
  const [v] = useState(() => {
    // Until the list is in the page its size and position are unknown, and the
    // virtualiser would draw nothing, then the oldest blocks, and the ones opened
    // at only once the scroll it makes is reported, a frame later. Drawn at once
    // where it opens, as the blocks' estimates place it in a window's height, the
    // page shows what it opens at in its first frame.
    const height = typeof window === "undefined" ? 0 : window.innerHeight;
    const offset = openAt === undefined ? Math.max(0, count * BLOCK_ESTIMATE_PX - height) : openAt * BLOCK_ESTIMATE_PX;
    return new Virtualizer<HTMLElement, HTMLElement>({
      count,
      getScrollElement: scroller,
      estimateSize: () => BLOCK_ESTIMATE_PX,
      overscan: 2,
      initialRect: { width: 0, height },
      initialOffset: offset,
      observeElementRect,
      observeElementOffset,
      scrollToFn: elementScroll,
      measureElement,
      onChange: () => rerender(0),
    });
  });
  v.setOptions({ ...v.options, count });
  useLayoutEffect(() => v._didMount(), [v]);
  useLayoutEffect(() => v._willUpdate());
  return v;
}

export function MessageList(props: { controller: Controller; conv: Conversation }) {
  const { controller, conv } = props;
  // Read here, not by the page around it: a page of history arriving re-renders
  // the list alone.
  void controller.state.revision.value;
  const me = controller.state.me.value;
  // What a row's time says depends on the day: a row is drawn again when it changes.
  const today = new Date().toDateString();
  const scroller = useRef<HTMLDivElement>(null);
  const first = conv.oldest;
  const rows = Math.max(0, conv.latest - first + 1);
  const count = Math.ceil(rows / BLOCK);
  // Where "new messages" begins, as it was when the conversation was opened.
  const [firstUnread] = useState(() => (conv.openedAt !== undefined ? conv.openedAt + 1 : 0));
  // Opened where the person left off (SPEC.md 5.3), else at the newest event.
  const atUnread = firstUnread >= first && firstUnread > 0 && firstUnread <= conv.latest;
  const openAt = atUnread ? Math.floor((firstUnread - first) / BLOCK) : undefined;
  const v = useVirtualizer(count, openAt, () => scroller.current);
  const atBottom = useRef(true);

  useLayoutEffect(() => {
    if (count === 0) return;
    if (openAt !== undefined) {
      atBottom.current = false;
      v.scrollToIndex(openAt, { align: "start" });
    } else {
      v.scrollToIndex(count - 1, { align: "end" });
    }
  }, [conv.conv]);

  // New events keep the view at the bottom if it was there.
  useLayoutEffect(() => {
    if (atBottom.current && count > 0) v.scrollToIndex(count - 1, { align: "end" });
  }, [count]);

  const items = v.getVirtualItems();

  // Fetch what is in view and not loaded.
  useEffect(() => {
    let missing: number | undefined;
    let lastMissing = 0;
    for (const item of items) {
      const from = first + item.index * BLOCK;
      const to = Math.min(conv.latest, from + BLOCK - 1);
      for (let seq = from; seq <= to; seq++) {
        if (!conv.events.has(seq)) {
          missing ??= seq;
          lastMissing = seq;
        }
      }
    }
    if (missing !== undefined) void controller.load(conv.conv, missing, lastMissing);
  });

  const onScroll = () => {
    const el = scroller.current;
    if (el) atBottom.current = el.scrollTop + el.clientHeight >= el.scrollHeight - BOTTOM_SLACK_PX;
  };

  return (
    <div
      class="messages"
      ref={scroller}
      onScroll={onScroll}
      role="log"
      aria-label={`messages in ${conv.conv}`}
      aria-live="polite"
      tabIndex={0}
    >
      {count === 0 ? <p class="empty">No messages yet. Say hello!</p> : null}
      <div style={{ height: `${v.getTotalSize()}px`, position: "relative" }}>
        {items.map((item) => {
          const from = first + item.index * BLOCK;
          const to = Math.min(conv.latest, from + BLOCK - 1);
          const block = [];
          for (let seq = from; seq <= to; seq++) {
            const event = conv.events.get(seq);
            block.push(
              <div key={seq} class="row">
                {seq === firstUnread ? <div class="new-marker" role="separator">new messages</div> : null}
                {event ? <Row event={event} me={me} today={today} /> : <div class="placeholder" aria-hidden="true">…</div>}
              </div>,
            );
          }
          return (
            <div
              key={from}
              data-index={item.index}
              ref={(el) => {
                if (el) v.measureElement(el);
              }}
              class="block"
              style={{ transform: `translateY(${item.start}px)` }}
            >
              {block}
            </div>
          );
        })}
      </div>
    </div>
  );
}

interface RowProps {
  readonly event: StoredEvent;
  readonly me: string | undefined;
  /** `Date.toDateString()` of now: the rows' times say the day when it is not today. */
  readonly today: string;
}

/**
 * One event, drawn again only when what it shows changes: the list renders on every
 * scrolled frame, and a screenful of rows drawn each time was most of a frame.
 */
class Row extends Component<RowProps> {
  override shouldComponentUpdate(next: RowProps): boolean {
    const p = this.props;
    return next.event !== p.event || next.me !== p.me || next.today !== p.today;
  }

  override render() {
    return drawRow(this.props.event, this.props.me);
  }
}

function drawRow(event: StoredEvent, me: string | undefined) {
  if (event.verb === "MSG" || event.verb === "FILE") {
    const mine = event.from === me;
    const parts = event.verb === "MSG" ? splitMentions(event.text, me) : [];
    const mentioned = !mine && parts.some((p) => p.mention);
    return (
      <article class={`msg${mentioned ? " mentioned" : ""}${mine ? " mine" : ""}`} data-seq={event.seq}>
        <header>
          <span class="from" style={{ color: `light-dark(hsl(${hue(event.from)} 60% 28%), hsl(${hue(event.from)} 60% 72%))` }}>
            {event.from}
          </span>
          <time dateTime={new Date(event.time).toISOString()}>{time(event.time)}</time>
        </header>
        {event.verb === "MSG" ? (
          <p class="text">
            {parts.map((p, i) => (p.mention ? <mark key={i}>{p.text}</mark> : <Lines key={i} text={p.text} />))}
          </p>
        ) : (
          <p class="file">
            <a href={`/files/${encodeURIComponent(event.file)}`} download={event.name}>
              {event.name}
            </a>{" "}
            <span class="muted">({size(event.size)})</span>
          </p>
        )}
      </article>
    );
  }
  return (
    <p class="system" data-seq={event.seq}>
      <time dateTime={new Date(event.time).toISOString()}>{time(event.time)}</time> {describeEvent(event)}
    </p>
  );
}

/** Text with its U+2028 line separators (SPEC.md 6.6) shown as line breaks. */
function Lines({ text }: { text: string }) {
  const lines = text.split(LINE_SEPARATOR);
  return <>{lines.map((line, i) => (i === 0 ? line : [<br key={i} />, line]))}</>;
}
