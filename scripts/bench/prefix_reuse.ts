/**
 * Prefix reuse on a real-sized model, the three workloads of issue 13, through the Engine (chat
 * template, scheduler, slots and the host-memory prompt cache):
 *
 * 1. two conversations alternating A B A B A A on 2 slots: the share of each prompt reused;
 * 2. a 6-turn chat sending back its replies: the prompt tokens each turn recomputes, against its
 *    new message plus the template tokens around it;
 * 3. a ~900-token system prompt, 10 unrelated requests, then the same system prompt with another
 *    question: time to first token against the cold one.
 *
 * ```sh
 * deno task synth --preset 2b4t --out /tmp/2b4t.gguf
 * deno run -A --v8-flags=--no-liftoff scripts/bench/prefix_reuse.ts --model /tmp/2b4t.gguf --threads 2
 * ```
 *
 * Options: `--model FILE` (required), `--threads N` (default 2), `--ctx N` (default 2048),
 * `--cache-mem MiB` (default 512), `--prefix N` prompt tokens of workload 3 (default 900),
 * `--workloads 1,2,3` (default all).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Engine } from "../../engine/run/engine.ts";
import type { ChatMessage } from "../../engine/text/chat_template.ts";
import type { GenerateRequest } from "../../engine/run/sequence.ts";
import { mulberry32 } from "../_prng.ts";

const WORDS = ("the jury said that city county election report office court state board public " +
  "funds department new program law tax year school meeting members plan work first time people " +
  "would could should money health service hospital road water police fire business market " +
  "history family music church small large early late general local national federal").split(" ");

const { values } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string" },
    threads: { type: "string", default: "2" },
    ctx: { type: "string", default: "2048" },
    "cache-mem": { type: "string", default: "512" },
    prefix: { type: "string", default: "900" },
    workloads: { type: "string", default: "1,2,3" },
  },
});
if (!values.model) throw new TypeError("--model FILE is required");
const workloads = new Set(values.workloads.split(",").map(Number));

const engine = await Engine.load(values.model, {
  threads: Number(values.threads),
  nCtx: Number(values.ctx),
  nSlots: 2,
  cacheMemBytes: Number(values["cache-mem"]) * 2 ** 20,
});
const say = (s: string) => console.log(s);
say(engine.describe());

/** Text of about `tokens` tokens. */
function text(tokens: number, seed: number): string {
  const rand = mulberry32(seed);
  const words: string[] = [];
  while (engine.tokenizer.encode(words.join(" "), { addBos: false }).length < tokens) {
    for (let i = 0; i < 16; i++) words.push(WORDS[Math.floor(rand() * WORDS.length)]);
  }
  while (engine.tokenizer.encode(words.join(" "), { addBos: false }).length > tokens) words.pop();
  return words.join(" ") + ".";
}

async function run(messages: ChatMessage[], extra: Partial<GenerateRequest> = {}) {
  const prompt = engine.encodeChat(messages);
  let reply = "", done;
  for await (
    const ev of engine.generate({ prompt, maxTokens: 4, sampling: { temperature: 0 }, ...extra })
  ) {
    if (ev.type === "token") reply += ev.text;
    if (ev.type === "done") (reply += ev.text, done = ev);
  }
  const { usage, timings, finishReason } = done!;
  return { reply, prompt: prompt.length, cached: usage.cachedTokens, ttft: timings.ttftMs, finishReason };
}

// 1. A B A B A A on 2 slots
if (workloads.has(1)) {
  say("\n1. alternating conversations, 2 slots");
  const a: ChatMessage[] = [{ role: "system", content: text(300, 1) }, { role: "user", content: "Why?" }];
  const b: ChatMessage[] = [{ role: "system", content: text(300, 2) }, { role: "user", content: "How?" }];
  for (const [name, m] of [["A", a], ["B", b], ["A", a], ["B", b], ["A", a], ["A", a]] as const) {
    const r = await run(m);
    const share = (100 * r.cached / r.prompt).toFixed(1);
    say(`  ${name}: prompt ${r.prompt}, cached ${r.cached} (${share}%), TTFT ${r.ttft.toFixed(0)} ms`);
  }
}

// 2. a 6-turn chat
if (workloads.has(2)) {
  say("\n2. six-turn chat (sampled replies sent back as history)");
  const chat: ChatMessage[] = [{ role: "system", content: text(100, 3) }];
  const assistant = engine.tokenizer.encode("Assistant: ", { addBos: false }).length;
  let prevFinish = "";
  for (let k = 0; k < 6; k++) {
    const question = text(20, 10 + k);
    chat.push({ role: "user", content: question });
    const r = await run(chat, { maxTokens: 12, sampling: { temperature: 1, seed: k } });
    // eot, the user turn, eot, "Assistant: " (+ the last reply token, never fed when it ended on length)
    const turn = 1 + engine.tokenizer.encode(`User: ${question}`, { addBos: false }).length + 1 + assistant +
      (prevFinish === "length" ? 1 : 0);
    say(
      `  turn ${k + 1}: prompt ${r.prompt}, cached ${r.cached}, recomputed ${r.prompt - r.cached}` +
        (k ? ` (new message + template: ${turn})` : "") + `, TTFT ${r.ttft.toFixed(0)} ms`,
    );
    chat.push({ role: "assistant", content: r.reply });
    prevFinish = r.finishReason;
  }
}

// 3. a long shared prefix after 10 unrelated requests
if (workloads.has(3)) {
  const prefix = Number(values.prefix);
  say(`\n3. a ${prefix}-token system prompt after 10 unrelated requests`);
  const system = text(prefix, 4);
  const cold = await run([{ role: "system", content: system }, { role: "user", content: "First question?" }]);
  say(`  cold: prompt ${cold.prompt}, cached ${cold.cached}, TTFT ${cold.ttft.toFixed(0)} ms`);
  for (let i = 0; i < 10; i++) await run([{ role: "user", content: text(60, 100 + i) }], { maxTokens: 1 });
  const warm = await run([{ role: "system", content: system }, {
    role: "user",
    content: "Second question?",
  }]);
  say(
    `  again: prompt ${warm.prompt}, cached ${warm.cached}, TTFT ${warm.ttft.toFixed(0)} ms = ` +
      `${(100 * warm.ttft / cold.ttft).toFixed(1)}% of cold`,
  );
}
const pc = engine.stats().promptCache;
if (pc) {
  say(
    `  host cache: ${
      (pc.bytes / 2 ** 20).toFixed(0)
    } MiB in ${pc.blocks} blocks, ${pc.hitTokens} positions restored`,
  );
}
await engine.close();
