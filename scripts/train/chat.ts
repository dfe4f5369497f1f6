/**
 * Chat-formatted training examples built from corpus sentences, in the 2B4T chat format
 * (`System: s<|eot_id|>User: u<|eot_id|>Assistant: a<|eot_id|>`, spec §4.4), plus the seeded PRNG
 * the data preparation uses (re-exported from `scripts/_prng.ts`).
 *
 * The tokens are those the engine will see: every turn is tokenized as the template renders it,
 * except the LAST assistant turn, whose prefix `Assistant: ` is tokenized on its own (the prompt the
 * server sends ends there) and the reply after it, so the model learns to continue exactly that
 * prompt and to end its turn with `<|eot_id|>`.
 *
 * @example
 * ```ts
 * import { mulberry32, shuffle } from "./chat.ts";
 * shuffle([1, 2, 3], mulberry32(7)); // a seeded permutation
 * ```
 */

export { mulberry32 } from "../_prng.ts";

/** Fisher-Yates shuffle in place; returns `xs`. */
export function shuffle<T>(xs: T[], rng: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

/** System prompts used in a quarter of the examples. */
export const SYSTEM_PROMPTS: readonly string[] = [
  "You are a helpful assistant.",
  "You are a helpful AI assistant.",
  "You are a friendly assistant.",
  "Answer in plain English.",
];

const words = (s: string) => s.split(/\s+/).filter(Boolean).length;

/**
 * One example from consecutive sentences `sents` (at least two): a random sentence is the user turn,
 * the next one to three sentences the reply; sometimes a second turn and a system prompt. Returns
 * undefined when the picked sentences are too short or too long.
 */
export function buildChatExample(
  sents: readonly string[],
  rng: () => number,
  enc: { encode(text: string): number[] },
  ids: { bos: number; eot: number },
): number[] | undefined {
  const turns: [string, string][] = [];
  let i = Math.floor(rng() * (sents.length - 1));
  const nTurns = rng() < 0.25 ? 2 : 1;
  for (let t = 0; t < nTurns && i + 1 < sents.length; t++) {
    const user = sents[i++];
    if (words(user) < 2 || words(user) > 50) return undefined;
    const k = 1 + Math.floor(rng() * 3);
    const reply: string[] = [];
    while (reply.length < k && i < sents.length && words(reply.join(" ") + " " + sents[i]) <= 90) {
      reply.push(sents[i++]);
    }
    if (reply.length === 0) return undefined;
    turns.push([user, reply.join(" ")]);
  }
  const out = [ids.bos];
  if (rng() < 0.25) {
    out.push(...enc.encode("System: " + SYSTEM_PROMPTS[Math.floor(rng() * SYSTEM_PROMPTS.length)]), ids.eot);
  }
  turns.forEach(([user, reply], t) => {
    out.push(...enc.encode("User: " + user), ids.eot);
    if (t === turns.length - 1) out.push(...enc.encode("Assistant: "), ...enc.encode(reply), ids.eot);
    else out.push(...enc.encode("Assistant: " + reply), ids.eot);
  });
  return out;
}
