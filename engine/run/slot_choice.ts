/**
 * Which KV slot a new prompt gets, and where its reusable prefix comes from.
 *
 * A slot's cache is worth keeping: it may be the start of the next turn of its conversation. So
 * the destination is, among the free slots:
 *
 * 1. one that loses nothing: empty, or holding a prefix of the new prompt (the previous turn of this
 *    conversation); the longest such prefix wins;
 * 2. else the one with the longest common prefix, when that reuses at least half of what the slot
 *    holds (a regenerated reply, an edited last message);
 * 3. else the least recently used one.
 *
 * The prefix itself may come from any slot, busy or free: the longest match is copied into the
 * destination (positions whose KV is computed are the same in every slot that holds the same
 * tokens before them), so two requests sharing a system prompt share its prefill without one
 * evicting the other's conversation.
 *
 * @module
 */

/** What the choice needs to know about a slot. */
export interface SlotView {
  /** Tokens whose K/V are in the slot, by position. */
  readonly tokens: readonly number[];
  /** A sequence runs in it (it cannot be the destination, but can be a source). */
  readonly busy: boolean;
  /** When it was last admitted or released (larger: more recent). */
  readonly lastUsed: number;
}

/** The decision. */
export interface SlotChoice {
  /** The destination slot. */
  readonly slot: number;
  /** Positions of the destination that stay (its common prefix with the prompt, within the limit). */
  readonly keep: number;
  /** The slot to copy a longer prefix from (== `slot` when none is longer). */
  readonly source: number;
  /** Positions `[0, sourceLength)` the source shares with the prompt (>= keep). */
  readonly sourceLength: number;
}

/** Length of the common prefix of `a` and `b`, at most `limit`. */
export function commonPrefix(a: readonly number[], b: readonly number[], limit = Infinity): number {
  const n = Math.min(a.length, b.length, limit);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * Chooses the destination slot for `prompt` (see the module doc); `reusable` bounds the positions
 * that may be reused (the last prompt token is always computed: its logits are needed). Returns
 * null when no slot is free.
 *
 * @example
 * ```ts
 * import { chooseSlot } from "./slot_choice.ts";
 * const slots = [
 *   { tokens: [1, 5, 6, 7], busy: false, lastUsed: 1 }, // request A
 *   { tokens: [], busy: false, lastUsed: 0 },
 * ];
 * chooseSlot(slots, [1, 8, 9, 10], 3)?.slot; // 1: sharing BOS is not worth evicting A
 * chooseSlot(slots, [1, 5, 6, 7, 2, 3], 5)?.slot; // 0: A's next turn
 * ```
 */
export function chooseSlot(
  slots: readonly SlotView[],
  prompt: readonly number[],
  reusable: number,
): SlotChoice | null {
  const match = slots.map((s) => commonPrefix(s.tokens, prompt));
  const reuse = match.map((m) => Math.min(m, reusable));
  let lossless = -1, partial = -1, lru = -1;
  slots.forEach((s, i) => {
    if (s.busy) return;
    if (match[i] === s.tokens.length) {
      if (lossless < 0 || reuse[i] > reuse[lossless]) lossless = i;
    } else if (2 * reuse[i] >= s.tokens.length && reuse[i] > 0) {
      if (partial < 0 || reuse[i] > reuse[partial]) partial = i;
    }
    if (lru < 0 || s.lastUsed < slots[lru].lastUsed) lru = i;
  });
  const slot = lossless >= 0 ? lossless : partial >= 0 ? partial : lru;
  if (slot < 0) return null;
  let source = slot;
  reuse.forEach((r, i) => {
    if (r > reuse[source]) source = i;
  });
  return { slot, keep: reuse[slot], source, sourceLength: reuse[source] };
}
