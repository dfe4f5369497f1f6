/**
 * Prefix reuse through the API on the embedded model (models/default.gguf, 256 positions), read
 * from `usage.prompt_tokens_details.cached_tokens`: alternating conversations keep their slots, a
 * multi-turn chat recomputes only its new message and the template around it, and a prefix evicted
 * from every slot comes back from the host-memory prompt cache with identical results.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { DEFAULT_MODEL_PATH } from "../../engine/model/default_model.ts";
import { type Harness, harness, type Json } from "./_harness.ts";

const CHAT = "/v1/chat/completions";
const SENTENCES = [
  "The jury further said in term-end presentments that the City Executive Committee deserved praise.",
  "The September-October term jury had been charged by Fulton Superior Court Judge Durwood Pye.",
  "Only a relative handful of such reports was received, the jury said, considering the interest.",
  "The grand jury commented on a number of other topics, among them the Atlanta and Fulton County purchasing.",
  "Merger proposed: however, the jury said it believes these two offices should be combined.",
  "It recommended that Fulton legislators act to have these laws studied and revised to the end of modernizing.",
  "The jury also commented on the Fulton ordinary's court which has been under fire for its practices.",
  "Nevertheless, we feel that in the future Fulton County should receive some portion of these funds.",
  "Four additional deputies be employed at the Fulton County Jail and a doctor, medical intern or nurse.",
  "The remainder of the funds went to the state welfare department and to the county welfare department.",
  "A revolving fund was set up for the purchase of the equipment needed by the new department of the city.",
  "The city purchasing department, the jury said, is lacking in experienced clerical personnel as a result.",
];

async function chat(h: Harness, body: Record<string, unknown>): Promise<Json> {
  const { status, body: out } = await h.json(CHAT, { temperature: 0, max_tokens: 8, ...body });
  assertEquals(status, 200, JSON.stringify(out));
  return out;
}

const cached = (r: Json): number => r.usage.prompt_tokens_details.cached_tokens;
const tokens = (h: Harness, text: string) => h.engine.tokenizer.encode(text, { addBos: false }).length;

async function withHarness(cacheMemBytes: number, fn: (h: Harness) => Promise<void>) {
  const h = await harness({ path: DEFAULT_MODEL_PATH, engine: { nCtx: 256, nSlots: 2, cacheMemBytes } });
  try {
    await fn(h);
  } finally {
    await h.close();
  }
}

Deno.test("two alternating conversations with 2 slots reuse >= 90% of each prompt from the third request on", async () => {
  await withHarness(0, async (h) => {
    const a = [{ role: "system", content: SENTENCES.slice(0, 4).join(" ") }, {
      role: "user",
      content: "Who?",
    }];
    const b = [{ role: "system", content: SENTENCES.slice(4, 8).join(" ") }, {
      role: "user",
      content: "Why?",
    }];
    const shares: number[] = [];
    for (const messages of [a, b, a, b, a, a]) {
      const r = await chat(h, { messages });
      shares.push(cached(r) / r.usage.prompt_tokens);
    }
    assert(shares[0] === 0 && shares[1] <= 0.05, `shares ${shares}`);
    assert(shares.slice(2).every((s) => s >= 0.9), `shares ${shares}`);
  });
});

/**
 * Six turns, each sending back the previous replies; returns how many replies the tokenizer would
 * have split differently from how the model wrote them.
 */
async function sixTurns(h: Harness, words = 6): Promise<number> {
  const messages: { role: string; content: string }[] = [];
  const assistant = tokens(h, "Assistant: ");
  let prev: Json = null, retokenized = 0;
  for (let k = 0; k < 6; k++) {
    const question = SENTENCES[k].split(" ").slice(0, words).join(" ");
    messages.push({ role: "user", content: question });
    // sampled, not greedy: the model may split words as the tokenizer never would
    const r = await chat(h, { messages, temperature: 1, seed: 7 + k, max_tokens: 8 });
    if (prev) {
      // the previous reply's last token is not in the cache when it ended on max_tokens
      const unfed = prev.choices[0].finish_reason === "length" ? 1 : 0;
      const expected = 1 + tokens(h, `User: ${question}`) + 1 + assistant + unfed; // eot, user turn, eot, "Assistant: "
      assertEquals(r.usage.prompt_tokens - cached(r), expected, `turn ${k + 1}`);
    }
    const content: string = r.choices[0].message.content;
    if (tokens(h, content.trim()) !== r.usage.completion_tokens) retokenized++; // (a stop token is not counted)
    messages.push({ role: "assistant", content });
    prev = r;
  }
  return retokenized;
}

Deno.test("turn k of a 6-turn chat recomputes only its new message and the template tokens around it", async () => {
  await withHarness(0, async (h) => {
    await sixTurns(h);
  });
});

Deno.test("a multi-turn chat reuses replies the tokenizer would split differently (random-weight model)", async () => {
  const h = await harness({ engine: { nCtx: 256, nSlots: 2, cacheMemBytes: 0 } });
  try {
    assert(await sixTurns(h, 2) > 0, "no reply re-tokenized differently: the test would prove nothing");
  } finally {
    await h.close();
  }
});

const PREFIX = SENTENCES.slice(0, 6).join(" ");

/** The shared prefix once, then 10 unrelated requests, then the prefix with another question. */
async function prefixAfterTraffic(h: Harness) {
  const first = await chat(h, {
    messages: [{ role: "system", content: PREFIX }, { role: "user", content: "One?" }],
  });
  for (let i = 0; i < 10; i++) {
    const other = `${SENTENCES[(i + 6) % 12]} ${SENTENCES[(i + 7) % 12]} Request ${i}.`;
    await chat(h, { messages: [{ role: "user", content: other }] });
  }
  const again = await chat(h, {
    messages: [{ role: "system", content: PREFIX }, { role: "user", content: "Two?" }],
    logprobs: true,
    top_logprobs: 3,
  });
  const prefixTokens = 1 + tokens(h, `System: ${PREFIX}`) + 1; // BOS, system turn, eot
  return { first, again, prefixTokens };
}

Deno.test("a prefix evicted from every slot by 10 other requests is restored from the host-memory cache", async () => {
  let restored: Json;
  await withHarness(64 << 20, async (h) => {
    const { again, prefixTokens } = await prefixAfterTraffic(h);
    assert(prefixTokens > 150, `prefix of ${prefixTokens} tokens`);
    assert(cached(again) >= 0.9 * prefixTokens, `cached ${cached(again)} of a ${prefixTokens}-token prefix`);
    assert(h.engine.stats().promptCache!.hitTokens >= cached(again) - 16);
    restored = again;
  });
  await withHarness(0, async (h) => {
    const { again, prefixTokens } = await prefixAfterTraffic(h);
    assert(cached(again) < 0.1 * prefixTokens, `without the cache: cached ${cached(again)}`);
    // restoring the KV is bit-identical to recomputing it: same tokens, same logprobs
    assertEquals(again.choices, restored.choices);
  });
});
