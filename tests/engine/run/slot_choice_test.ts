import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { chooseSlot, commonPrefix, type SlotView } from "../../../engine/run/slot_choice.ts";

const A = [1, 10, 11, 12, 13, 14, 15, 16];
const B = [1, 20, 21, 22, 23, 24, 25, 26];
const free = (tokens: number[], lastUsed = 0): SlotView => ({ tokens, busy: false, lastUsed });
const busy = (tokens: number[], lastUsed = 0): SlotView => ({ tokens, busy: true, lastUsed });

Deno.test("commonPrefix() stops at the first difference and at the limit", () => {
  assertEquals(commonPrefix([1, 2, 3], [1, 2, 4]), 2);
  assertEquals(commonPrefix([1, 2, 3], [1, 2, 3, 4]), 3);
  assertEquals(commonPrefix([1, 2, 3], [1, 2, 3], 1), 1);
  assertEquals(commonPrefix([], [1]), 0);
});

Deno.test("chooseSlot() takes an empty slot over evicting a slot that shares only BOS", () => {
  const c = chooseSlot([free([...A, 90, 91], 1), free([])], B, B.length - 1)!;
  assertEquals(c, { slot: 1, keep: 0, source: 0, sourceLength: 1 }); // BOS is copied, A stays
});

Deno.test("chooseSlot() alternating A B A B with two slots: each prompt returns to its own slot", () => {
  const slots = [free([], 0), free([], 0)];
  const seen: number[] = [];
  let clock = 0;
  for (const p of [A, B, A, B, A, A]) {
    const c = chooseSlot(slots, p, p.length - 1)!;
    seen.push(c.keep);
    slots[c.slot] = free([...p, 99, 98], ++clock); // the prompt and a two-token reply
  }
  assertEquals(seen, [0, 0, 7, 7, 7, 7]);
});

Deno.test("chooseSlot() continues a conversation in the slot that holds its previous turn", () => {
  const turn1 = [...A, 50, 51];
  const c = chooseSlot([free([]), free(turn1, 5)], [...turn1, 2, 3, 4], 12)!;
  assertEquals(c, { slot: 1, keep: 10, source: 1, sourceLength: 10 });
});

Deno.test("chooseSlot() reuses a slot when it keeps at least half of what it holds (a regenerated reply)", () => {
  const slots = [free([...A, 50, 51, 52], 1), free(B, 0)];
  assertEquals(chooseSlot(slots, A, A.length - 1)!.slot, 0);
  assertEquals(chooseSlot(slots, A, A.length - 1)!.keep, 7);
});

Deno.test("chooseSlot() evicts the least recently used slot when no slot is worth reusing", () => {
  const slots = [free(A, 7), free(B, 3), busy([1, 30, 31], 9)];
  const c = chooseSlot(slots, [1, 40, 41, 42], 3)!;
  assertEquals(c.slot, 1);
  assertEquals(c.keep, 1);
});

Deno.test("chooseSlot() copies a longer prefix from another slot, busy or free", () => {
  const system = [1, 5, 6, 7, 8, 9];
  const slots = [busy([...system, 40, 41], 4), free([])];
  const c = chooseSlot(slots, [...system, 70, 71], 7)!;
  assertEquals(c, { slot: 1, keep: 0, source: 0, sourceLength: 6 });
});

Deno.test("chooseSlot() never reuses beyond the limit, and returns null when every slot is busy", () => {
  assertEquals(chooseSlot([free(A)], A, 0), { slot: 0, keep: 0, source: 0, sourceLength: 0 });
  assertEquals(chooseSlot([busy(A), busy(B)], A, 7), null);
});
