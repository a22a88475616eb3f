/**
 * Mentions (SPEC.md says nothing of them: a client's own rule): the user's name as
 * a word, with or without `@`, in any case. One rule, for highlighting and for
 * deciding what to notify.
 */

/** Splits `text` around the mentions of `me`, for highlighting. */
export function splitMentions(text: string, me: string | undefined): { text: string; mention: boolean }[] {
  if (!me) return [{ text, mention: false }];
  const escaped = me.replace(/[.\\-]/g, (c) => `\\${c}`);
  const re = new RegExp(`(^|[^a-z0-9_.-])(@?${escaped})(?=$|[^a-z0-9_-])`, "gi");
  const out: { text: string; mention: boolean }[] = [];
  let last = 0;
  for (const m of text.matchAll(re)) {
    const start = (m.index ?? 0) + (m[1]?.length ?? 0);
    if (start > last) out.push({ text: text.slice(last, start), mention: false });
    out.push({ text: m[2] ?? "", mention: true });
    last = start + (m[2]?.length ?? 0);
  }
  if (last < text.length) out.push({ text: text.slice(last), mention: false });
  return out;
}

/** Whether `text` mentions `me`. */
export function mentions(text: string, me: string | undefined): boolean {
  return splitMentions(text, me).some((p) => p.mention);
}
