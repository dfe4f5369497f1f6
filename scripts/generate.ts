/**
 * `deno task generate`: load a model, stream a completion to stdout, report speeds on stderr.
 *
 * ```sh
 * deno task generate --model models/default.gguf --prompt "The jury said" -n 64
 * deno task generate --model m.gguf --chat --prompt "How are you?" --temperature 0.7 --threads 2
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Engine } from "../engine/run/engine.ts";
import type { HeadOption } from "../engine/model/loader.ts";
import type { KernelVariant } from "../wasm/loader.ts";
import { DEFAULT_MODEL_PATH } from "../engine/model/default_model.ts";
import { terminalProgress } from "../engine/model/progress_bar.ts";

const USAGE = `usage: deno task generate [--model FILE] --prompt TEXT [--chat] [-n N] [--temperature T]
       [--top-k K] [--top-p P] [--seed S] [--threads N] [--kernel ref|simd128|relaxed] [--head auto|file|q8_0|q7]
       [--ctx N] [--revec on|off]`;

function fail(message: string): never {
  console.error(`generate: ${message}\n${USAGE}`);
  Deno.exit(2);
}

function num(v: string | undefined, name: string, fallback: number, int = false): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || (int && !Number.isInteger(n))) {
    fail(`--${name} must be a ${int ? "integer" : "number"}`);
  }
  return n;
}

if (import.meta.main) {
  let args;
  try {
    args = parseArgs({
      args: Deno.args,
      options: {
        model: { type: "string" },
        prompt: { type: "string" },
        chat: { type: "boolean", default: false },
        n: { type: "string", short: "n" },
        temperature: { type: "string" },
        "top-k": { type: "string" },
        "top-p": { type: "string" },
        seed: { type: "string" },
        threads: { type: "string" },
        kernel: { type: "string" },
        head: { type: "string" },
        ctx: { type: "string" },
        revec: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }).values;
  } catch (e) {
    fail((e as Error).message);
  }
  if (args.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (args.prompt === undefined) fail("--prompt is required");
  const kernel = args.kernel as KernelVariant | undefined;
  if (kernel && !["ref", "simd128", "relaxed"].includes(kernel)) fail(`unknown --kernel ${kernel}`);
  const head = (args.head ?? "auto") as HeadOption;
  if (!["auto", "file", "q8_0", "q7"].includes(head)) fail(`unknown --head ${head}`);
  const revec = args.revec ?? "on";
  if (!["on", "off"].includes(revec)) fail(`--revec must be on or off, got ${revec}`);
  const maxTokens = num(args.n, "n", 128, true);
  const threads = args.threads ? num(args.threads, "threads", 1, true) : undefined;

  const err = (s: string) => Deno.stderr.writeSync(new TextEncoder().encode(s));
  const engine = await Engine.load(args.model ?? DEFAULT_MODEL_PATH, {
    kernel,
    threads,
    head,
    revec: revec === "on",
    nCtx: args.ctx ? num(args.ctx, "ctx", 0, true) : undefined,
    maxBatch: 256,
    onProgress: terminalProgress("loading"),
  });
  err(`${engine.describe()}\n`);
  const prompt = args.chat
    ? engine.encodeChat([{ role: "user", content: args.prompt }])
    : engine.tokenizer.encode(args.prompt);
  const sampling = {
    temperature: num(args.temperature, "temperature", 0),
    topK: num(args["top-k"], "top-k", 0, true),
    topP: num(args["top-p"], "top-p", 1),
    seed: args.seed ? num(args.seed, "seed", 0, true) : undefined,
  };
  const out = new TextEncoder();
  const budget = Math.min(maxTokens, engine.info.nCtx - prompt.length);
  if (!args.chat) Deno.stdout.writeSync(out.encode(args.prompt));
  const t0 = performance.now();
  for await (const ev of engine.generate({ prompt, maxTokens: budget, sampling })) {
    if (ev.type === "token" || ev.type === "done") Deno.stdout.writeSync(out.encode(ev.text));
    if (ev.type === "done") {
      const prefillMs = ev.timings.ttftMs - ev.timings.queueMs;
      err(
        `\n\n[${ev.finishReason}] load ${
          engine.info.loadMs.toFixed(0)
        } ms | prompt ${ev.usage.promptTokens} tokens, ` +
          `prefill ${(ev.usage.promptTokens / (prefillMs / 1000)).toFixed(1)} tok/s | ` +
          `${ev.usage.completionTokens} generated, decode ${
            ev.timings.decodeTokensPerSecond.toFixed(1)
          } tok/s | ` +
          `total ${(performance.now() - t0).toFixed(0)} ms\n`,
      );
    }
  }
  await engine.close();
}
