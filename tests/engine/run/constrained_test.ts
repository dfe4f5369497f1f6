/**
 * Constrained decoding on the embedded model: every sample at temperature 1 with a random seed,
 * for every schema of the corpus, parses and validates with an independent validator (ajv with
 * ajv-formats); grammars and unconstrained sequences share batches; a grammar that completes ends
 * generation; cancellation frees the matchers.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { Engine } from "../../../engine/run/engine.ts";
import type { GenerateRequest, GenerationEvent } from "../../../engine/run/sequence.ts";
import { CORPUS } from "./_schema_corpus.ts";

const MODEL = new URL("../../../models/default.gguf", import.meta.url).pathname;
const SAMPLES = 20;

// deno-lint-ignore no-explicit-any
const ajv = new (Ajv2020 as any)({ strict: false });
// deno-lint-ignore no-explicit-any
(addFormats as any)(ajv);

async function run(engine: Engine, request: GenerateRequest, signal?: AbortSignal) {
  let text = "", finish = "", tokens = 0;
  const events: GenerationEvent[] = [];
  for await (const ev of engine.generate(request, signal)) {
    events.push(ev);
    if (ev.type !== "prompt") text += ev.text;
    if (ev.type === "token") tokens++;
    if (ev.type === "done") finish = ev.finishReason;
  }
  return { text, finish, tokens, events };
}

Deno.test("constrained decoding on the embedded model", async (t) => {
  const engine = await Engine.load(MODEL, { threads: 2, nCtx: 256, nSlots: 8, maxQueue: 64 });
  const prompt = engine.encodeChat([{ role: "user", content: "Answer in JSON." }]);
  const maxTokens = engine.info.nCtx - prompt.length;
  try {
    await t.step(
      `${CORPUS.length} schemas x ${SAMPLES} samples at temperature 1 all parse and validate`,
      async () => {
        assert(CORPUS.length >= 30);
        for (const [name, schema] of CORPUS) {
          const grammar = await engine.grammars.compile({ type: "json_schema", schema });
          const validate = ajv.compile(schema);
          const seeds = Array.from({ length: SAMPLES }, () => crypto.getRandomValues(new Uint32Array(1))[0]);
          const runs = seeds.map((seed) =>
            run(engine, { prompt, maxTokens, sampling: { temperature: 1, seed }, grammar })
          );
          grammar.release();
          for (const [i, r] of (await Promise.all(runs)).entries()) {
            const what = `${name}, seed ${seeds[i]}: ${JSON.stringify(r.text)}`;
            assertEquals(r.finish, "stop", what);
            let value: unknown;
            try {
              value = JSON.parse(r.text);
            } catch (e) {
              throw new Error(`${what} does not parse: ${(e as Error).message}`);
            }
            assert(validate(value), `${what} is invalid: ${JSON.stringify(validate.errors)}`);
          }
        }
      },
    );

    await t.step("constrained and free sequences share batches; free output is unchanged", async () => {
      const free = { prompt, maxTokens: 24, sampling: { temperature: 0 } };
      const alone = await run(engine, free);
      const grammar = await engine.grammars.compile({ type: "json_schema", schema: CORPUS[0][1] });
      const mixed = await Promise.all([
        run(engine, { prompt, maxTokens, sampling: { temperature: 1 }, grammar }),
        run(engine, free),
        run(engine, { prompt, maxTokens, sampling: { temperature: 0 }, grammar }),
        run(engine, free),
      ]);
      grammar.release();
      assertEquals(mixed[1].text, alone.text);
      assertEquals(mixed[3].text, alone.text);
      for (const r of [mixed[0], mixed[2]]) assert(ajv.validate(CORPUS[0][1], JSON.parse(r.text)), r.text);
    });

    await t.step(
      "a completed grammar ends generation with stop; max_tokens first ends it with length",
      async () => {
        const grammar = await engine.grammars.compile({ type: "ebnf", grammar: 'root ::= "yes" | "no"' });
        const done = await run(engine, { prompt, maxTokens: 50, sampling: { temperature: 1 }, grammar });
        assert(["yes", "no"].includes(done.text), done.text);
        assertEquals(done.finish, "stop");
        // the stop tokens are banned, yet the grammar's end still ends it
        const banned = Object.fromEntries(engine.stopTokens.map((id) => [id, -100]));
        const ended = await run(engine, { prompt, maxTokens: 50, sampling: { logitBias: banned }, grammar });
        assertEquals(ended.finish, "stop");
        grammar.release();
        const long = await engine.grammars.compile({
          type: "json_schema",
          schema: { type: "string", minLength: 30 },
        });
        const cut = await run(engine, { prompt, maxTokens: 4, sampling: {}, grammar: long });
        long.release();
        assertEquals([cut.finish, cut.tokens], ["length", 4]);
        assert(cut.text.startsWith('"'));
      },
    );

    await t.step("stop strings, greedy sampling and prefix reuse work under a grammar", async () => {
      const grammar = await engine.grammars.compile({ type: "ebnf", grammar: 'root ::= "ab" [a-z]* "."' });
      const r = await run(engine, {
        prompt,
        maxTokens: 40,
        sampling: { temperature: 0 },
        stop: ["b"],
        grammar,
      });
      assertEquals([r.text, r.finish], ["a", "stop"]);
      const g = await run(engine, { prompt, maxTokens: 40, sampling: { temperature: 0 }, grammar });
      const again = await run(engine, { prompt, maxTokens: 40, sampling: { temperature: 0 }, grammar });
      grammar.release();
      assertEquals(g.text, again.text);
      // the prompt's KV cache is reused as for any request
      const done = again.events.at(-1) as Extract<GenerationEvent, { type: "done" }>;
      assertEquals(done.usage.cachedTokens, prompt.length - 1);
      assert(/^ab[a-z]*\.?$/.test(g.text), g.text);
    });

    await t.step("cancelling constrained sequences frees their matchers", async () => {
      const grammar = await engine.grammars.compile({ type: "json_object" });
      const ac = new AbortController();
      const runs = Array.from(
        { length: 4 },
        () =>
          run(engine, { prompt, maxTokens, sampling: { logitBias: { 34: 10 } }, grammar }, ac.signal).catch((
            e,
          ) => e),
      );
      grammar.release();
      setTimeout(() => ac.abort(new Error("gone")), 50);
      for (const r of await Promise.all(runs)) assert(r instanceof Error || r.finish, String(r));
      for (let i = 0; (await engine.grammars.stats()).matchers > 0; i++) {
        assert(i < 100, "matchers still open");
        await new Promise((r) => setTimeout(r, 10));
      }
      assertEquals(engine.stats().busySlots, 0);
    });
  } finally {
    await engine.close();
  }
});
