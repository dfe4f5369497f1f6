/**
 * The embedded default model against the reference file its training script wrote from PyTorch's
 * evaluation of the same exported ternary weights (models/default.reference.json, format
 * bitnet-reference-v1, documented in scripts/train/reference.py): tokenizer ids, teacher-forced
 * perplexity (within 1%) and argmax agreement (at least 99% of positions), greedy continuations,
 * and English text from a fresh `deno task serve` through the HTTP API.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { DEFAULT_MODEL_PATH } from "../../engine/model/default_model.ts";
import { Engine } from "../../engine/run/engine.ts";
import type { HeadMode } from "../../engine/model/loader.ts";
import { serve, waitFor } from "../_serve.ts";

interface Reference {
  format: string;
  model_sha256: string;
  context_length: number;
  heldout: { ppl: number };
  bigram: { ppl: number };
  sequences: { tokens: number[]; target_logprob: number[]; argmax: number[]; margin: number[] }[];
  sequences_ppl: number;
  greedy: { prompt_ids: number[]; ids: number[]; text: string }[];
  tokenizer_samples: { text: string; ids: number[] }[];
}

/** The most frequent English function words. */
const COMMON_WORDS = new Set(
  ("the of and to a in that is was he for it with as his on be at by i had not are but from or have an " +
    "they which one you were her all she there would their we him been has when who will more no if out " +
    "so said what up its about into than them can only other new some could time these two may then do " +
    "first any my now such like our over man me even most made after also did many before must through " +
    "back years where much your way well down should because each just those people how too little state " +
    "good very make world still own see men work long get here between both life being under never day " +
    "same another know while last might us great old year off come since against go came right used take " +
    "three this").split(" "),
);

const REF_PATH = DEFAULT_MODEL_PATH.replace(/\.gguf$/, ".reference.json");
const ref: Reference = JSON.parse(Deno.readTextFileSync(REF_PATH));

async function withEngine<T>(head: HeadMode, fn: (e: Engine) => Promise<T>): Promise<T> {
  const ctx = ref.context_length;
  const engine = await Engine.load(DEFAULT_MODEL_PATH, {
    threads: 2,
    head,
    nCtx: ctx,
    maxBatch: ctx,
    maxOut: ctx,
  });
  try {
    return await fn(engine);
  } finally {
    await engine.close();
  }
}

function logSoftmaxAt(row: Float32Array, id: number): number {
  let m = -Infinity;
  for (const x of row) m = Math.max(m, x);
  let s = 0;
  for (const x of row) s += Math.exp(x - m);
  return row[id] - m - Math.log(s);
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

Deno.test("the default model is the file the reference was computed from", async () => {
  assertEquals(ref.format, "bitnet-reference-v1");
  const digest = await crypto.subtle.digest("SHA-256", Deno.readFileSync(DEFAULT_MODEL_PATH));
  assertEquals(
    Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join(""),
    ref.model_sha256,
  );
  // the quality bar of the model card: clearly below the bigram baseline on the same split
  assert(
    ref.heldout.ppl < 0.8 * ref.bigram.ppl,
    `held-out ppl ${ref.heldout.ppl} vs bigram ${ref.bigram.ppl}`,
  );
});

Deno.test("the engine tokenizer gives the training tokenizer's ids on held-out text", async () => {
  await withEngine("file", (e) => {
    for (const s of ref.tokenizer_samples) {
      assertEquals(e.tokenizer.encode(s.text, { addBos: false }), s.ids, s.text);
    }
    return Promise.resolve();
  });
});

/**
 * The exact head must agree with PyTorch (issue bar: 99% of argmax); the quantized heads are a
 * measured speed/accuracy trade: perplexity within 1%, argmax agreement no worse than the bound
 * models/README.md states for them.
 */
const MIN_ARGMAX = { file: 0.99, q8_0: 0.975, q7: 0.97 } as const;

for (const head of ["file", "q8_0", "q7"] as const) {
  Deno.test(
    `teacher-forced held-out perplexity within 1% of PyTorch, argmax on >= ${
      100 * MIN_ARGMAX[head]
    }% of positions (head ${head})`,
    async () => {
      await withEngine(head, async (e) => {
        const rt = e.runtime, V = rt.config.nVocab;
        let nll = 0, n = 0, agree = 0;
        for (const seq of ref.sequences) {
          const inputs = seq.tokens.slice(0, -1);
          const logits = await rt.forward({
            tokens: inputs,
            pos: inputs.map((_, i) => i),
            slot: inputs.map(() => 0),
            outIdx: inputs.map((_, i) => i),
          });
          for (let i = 0; i < inputs.length; i++) {
            const row = logits.subarray(i * V, (i + 1) * V);
            nll -= logSoftmaxAt(row, seq.tokens[i + 1]);
            if (argmax(row) === seq.argmax[i]) agree++;
            n++;
          }
        }
        const ppl = Math.exp(nll / n);
        const rel = Math.abs(ppl / ref.sequences_ppl - 1);
        console.log(
          `head ${head}: engine ppl ${ppl.toFixed(4)} vs PyTorch ${ref.sequences_ppl} (${
            (100 * rel).toFixed(3)
          }%), argmax ${agree}/${n}`,
        );
        assert(
          rel <= 0.01,
          `engine ppl ${ppl} vs PyTorch ${ref.sequences_ppl}: ${(100 * rel).toFixed(2)}% apart`,
        );
        assert(agree >= MIN_ARGMAX[head] * n, `argmax agrees on ${agree}/${n} positions`);
      });
    },
  );
}

/**
 * Largest gap between the engine's best logit and the logit of PyTorch's choice where the two may
 * choose differently. PyTorch's continuations come from float32 arithmetic; the engine rounds some
 * steps more finely (RMSNorm in double), so at a near tie the two can part: "The man was a man, but
 * he was a man, and" continues with id 69 in exact arithmetic (the float64 oracle, tests/_oracle.ts:
 * 4.53051 against 4.52700 for PyTorch's 473), which the engine follows.
 */
const NEAR_TIE = 0.01;

Deno.test("greedy continuations match PyTorch's until a near tie", async () => {
  await withEngine("file", async (e) => {
    const rt = e.runtime, V = rt.config.nVocab;
    const next = async (tokens: number[], from: number) => {
      const logits = await rt.forward({
        tokens,
        pos: tokens.map((_, i) => from + i),
        slot: tokens.map(() => 0),
        outIdx: [tokens.length - 1],
      });
      return logits.slice(0, V);
    };
    let exact = 0, compared = 0;
    for (const g of ref.greedy) {
      let row = await next(g.prompt_ids, 0), i = 0;
      for (; i < g.ids.length; i++) {
        const best = argmax(row);
        if (best !== g.ids[i]) {
          const gap = row[best] - row[g.ids[i]];
          assert(
            gap <= NEAR_TIE,
            `${g.text}: token ${i} is ${best}, PyTorch's ${g.ids[i]} is ${gap} below it`,
          );
          break;
        }
        row = await next([g.ids[i]], g.prompt_ids.length + i);
      }
      compared += i;
      if (i === g.ids.length) exact++;
    }
    assert(exact >= ref.greedy.length / 2, `${exact}/${ref.greedy.length} continuations identical`);
    assert(compared >= 8 * ref.greedy.length, `only ${compared} tokens agree before a near tie`);
  });
});

Deno.test("deno task serve with no flags serves the default model and answers a chat in English", async () => {
  const child = serve(["--port", "0", "--threads", "2"]);
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const stdout = new Response(child.stdout).text();
  try {
    const banner = await waitFor(stderr, /serving on (http:\/\/127\.0\.0\.1:\d+)/);
    const url = banner.match(/serving on (http:\/\/127\.0\.0\.1:\d+)/)![1];
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        messages: [{ role: "user", content: "What did the jury say?" }],
        max_tokens: 40,
        seed: 1,
      }),
    });
    assertEquals(res.status, 200);
    const text: string = (await res.json()).choices[0].message.content;
    const words = (text.match(/[A-Za-z]+/g) ?? []).map((w) => w.toLowerCase());
    assert(words.length >= 5, `expected English words, got ${JSON.stringify(text)}`);
    // English prose is about half function words; BPE gibberish is not
    const common = words.filter((w) => COMMON_WORDS.has(w)).length;
    assert(
      common >= 0.25 * words.length,
      `${common}/${words.length} common English words: ${JSON.stringify(text)}`,
    );
    assert(!/\uFFFD/.test(text), `no broken characters: ${JSON.stringify(text)}`);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await stderr.cancel();
    await stdout;
  }
});
