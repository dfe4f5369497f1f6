/**
 * `POST /v1/completions`: prompts (text or token ids) -> `n` generations each -> OpenAI's
 * `text_completion` object or stream. `echo` prepends the prompt; with `logprobs` it also returns
 * the prompt tokens' log-probabilities (first entry null), so perplexity can be measured through
 * the API with `max_tokens: 0`. `best_of` > `n` generates `best_of` per prompt and returns the `n`
 * with the highest log-probability per token (OpenAI's definition; not streamable, all billed).
 *
 * @module
 */
import { Hono } from "hono";
import type { Engine } from "../engine/run/engine.ts";
import type { GenerationEvent, LogprobInfo } from "../engine/run/sequence.ts";
import type { Tokenizer } from "../engine/text/tokenizer.ts";
import { readJson } from "./body.ts";
import type { AppEnv, Deps } from "./context.ts";
import { ApiError } from "./errors.ts";
import { checkIds, Generation, type Meta, respond, responseMeta, runSpecs } from "./generation.ts";
import { type CompletionLogprobs, completionLogprobs } from "./logprobs.ts";
import { inspectFields } from "./fields.ts";
import { CompletionRequest } from "./schemas.ts";
import { compileGrammar, grammarSpec } from "./structured.ts";

const IMPLEMENTED: ReadonlySet<string> = new Set(Object.keys(CompletionRequest.shape));

/** The completions routes. */
export function completionRoutes(deps: Deps): Hono<AppEnv> {
  return new Hono<AppEnv>().post("/v1/completions", async (c) => {
    const body = await readJson(c, CompletionRequest, inspectFields(c, deps, "completions", IMPLEMENTED));
    const engine = c.get("engine");
    const prompts = toPrompts(engine, body.prompt);
    const logprobs = body.logprobs ?? undefined, echo = !!body.echo;
    const n = body.n ?? 1, bestOf = body.best_of ?? n;
    if (bestOf < n) throw ApiError.badRequest(`best_of (${bestOf}) must be at least n (${n})`, "best_of");
    if (bestOf > n && body.stream) {
      throw ApiError.badRequest(
        "best_of greater than n cannot be streamed: the best are known at the end",
        "best_of",
      );
    }
    const constraint = grammarSpec(body);
    const grammar = constraint ? await compileGrammar(engine, constraint.spec, constraint.param) : undefined;
    const opts = {
      maxTokens: body.max_tokens,
      logprobs,
      promptLogprobs: echo && logprobs !== undefined,
      n: bestOf,
      score: bestOf > n,
      grammar,
    };
    let gen: Generation;
    try {
      const specs = runSpecs(engine, prompts.map((p) => p.ids), body, opts);
      gen = new Generation(c, deps, specs, {
        param: "prompt",
        user: body.user ?? body.safety_identifier,
      });
    } finally {
      grammar?.release(); // each sequence holds its own matcher now
    }
    const f = new Formatter(gen, engine.tokenizer, echo ? prompts : null, logprobs !== undefined);
    const meta = responseMeta(c, "cmpl");
    const usage = !!body.stream_options?.include_usage;
    return respond(c, gen, !!body.stream, {
      chunks: () => f.chunks(meta, usage),
      whole: () => f.completion(meta, bestOf > n ? n : undefined),
    });
  });
}

interface Prompt {
  readonly ids: number[];
  /** What `echo` returns: the prompt as sent, or the decoded ids. */
  readonly text: string;
  /** Where the first token's text starts in `text`: negative when BOS was added to a text prompt. */
  readonly offset: number;
}

/** Text prompts get the model's BOS and special-token parsing (as llama-server); ids are used as given. */
function toPrompts(engine: Engine, prompt: CompletionRequest["prompt"]): Prompt[] {
  const tok = engine.tokenizer;
  const list: (string | number[])[] = typeof prompt === "string" || typeof prompt[0] === "number"
    ? [prompt as string | number[]]
    : prompt as (string | number[])[];
  return list.map((p, i) => {
    if (typeof p === "string") {
      const ids = tok.encode(p, { parseSpecial: true });
      const bos = ids[0] === tok.bosId ? tok.tokenString(tok.bosId) : "";
      return { ids, text: p, offset: bos && !p.startsWith(bos) ? -bos.length : 0 };
    }
    checkIds(engine, p, list.length > 1 ? `prompt[${i}]` : "prompt");
    return { ids: p, text: tok.decode(p), offset: 0 };
  });
}

/** One choice's text so far and the tokens whose log-probabilities are not yet sent. */
class Choice {
  text = "";
  finish = "length";
  /** Mean log-probability per sampled token (`best_of`). */
  score = 0;
  ids: number[] = [];
  infos: (LogprobInfo | null)[] = [];
  /** Where the pending tokens start in `text`. */
  offset = 0;
}

class Formatter {
  readonly #choices: Choice[];

  constructor(
    readonly gen: Generation,
    readonly tok: Tokenizer,
    readonly echo: readonly Prompt[] | null,
    readonly withLogprobs: boolean,
  ) {
    this.#choices = gen.specs.map(() => new Choice());
  }

  /** Adds `text` to choice `i`; returns the log-probabilities of the tokens pending until now. */
  #add(i: number, text: string): CompletionLogprobs | null {
    const ch = this.#choices[i];
    ch.text += text;
    if (!this.withLogprobs) return null;
    const lp = ch.ids.length ? completionLogprobs(this.tok, ch.ids, ch.infos, ch.offset) : null;
    ch.ids = [];
    ch.infos = [];
    ch.offset = ch.text.length;
    return lp;
  }

  #echoText(i: number): string {
    return this.echo?.[this.gen.specs[i].promptIndex].text ?? "";
  }

  /** Applies one event; returns the chunk choices it produces (for streaming). */
  #apply(i: number, ev: GenerationEvent): Record<string, unknown>[] {
    const ch = this.#choices[i];
    if (ev.type === "prompt") {
      ch.ids = [...this.gen.specs[i].request.prompt];
      ch.infos = [...ev.logprobs];
      ch.offset = this.echo?.[this.gen.specs[i].promptIndex].offset ?? 0;
      return [{ index: i, text: this.#echoText(i), logprobs: this.#add(i, this.#echoText(i)) }];
    }
    if (ev.type === "token") {
      ch.ids.push(ev.id);
      ch.infos.push(ev.logprob ?? null);
      return ev.text ? [{ index: i, text: ev.text, logprobs: this.#add(i, ev.text) }] : [];
    }
    ch.finish = ev.finishReason;
    ch.score = ev.meanLogprob ?? 0;
    const last = ev.text ? [{ index: i, text: ev.text, logprobs: this.#add(i, ev.text) }] : [];
    return [...last, { index: i, text: "", logprobs: this.#add(i, ""), finish_reason: ev.finishReason }];
  }

  /** Echoed prompts without log-probabilities go out before any token. */
  #echoFirst(): Record<string, unknown>[] {
    if (!this.echo || this.withLogprobs) return [];
    return this.#choices.map((_, i) => ({
      index: i,
      text: this.#echoText(i),
      logprobs: this.#add(i, this.#echoText(i)),
    }));
  }

  /** The whole response; `best` keeps only that many choices per prompt, the highest scored. */
  async completion(meta: Meta, best?: number) {
    const merged = this.#choices.map(() =>
      ({ tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] }) as CompletionLogprobs
    );
    const collect = (parts: Record<string, unknown>[]) => {
      for (const p of parts) {
        const lp = p.logprobs as CompletionLogprobs | null, m = merged[p.index as number];
        if (lp) {
          for (const k of ["tokens", "token_logprobs", "top_logprobs", "text_offset"] as const) {
            m[k].push(...lp[k] as never[]);
          }
        }
      }
    };
    collect(this.#echoFirst());
    for await (const [i, ev] of this.gen.events()) collect(this.#apply(i, ev));
    let order = this.#choices.map((_, i) => i);
    if (best !== undefined) {
      const groups = new Map<number, number[]>(); // choices by prompt, in prompt order
      for (const i of order) {
        const p = this.gen.specs[i].promptIndex;
        groups.set(p, [...groups.get(p) ?? [], i]);
      }
      const score = (i: number) => this.#choices[i].score;
      order = [...groups.values()].flatMap((g) =>
        g.sort((a, b) => score(b) - score(a) || a - b).slice(0, best)
      );
    }
    return {
      id: meta.id,
      object: "text_completion",
      created: meta.created,
      model: meta.model,
      choices: order.map((i, index) => ({
        index,
        text: this.#choices[i].text,
        logprobs: this.withLogprobs ? merged[i] : null,
        finish_reason: this.#choices[i].finish,
      })),
      usage: this.gen.usage(),
    };
  }

  async *chunks(meta: Meta, includeUsage: boolean) {
    const head = { id: meta.id, object: "text_completion", created: meta.created, model: meta.model };
    const chunk = (choice: Record<string, unknown>) => ({
      ...head,
      choices: [{
        index: choice.index,
        text: choice.text,
        logprobs: choice.logprobs ?? null,
        finish_reason: choice.finish_reason ?? null,
      }],
      ...(includeUsage ? { usage: null } : {}),
    });
    for (const c of this.#echoFirst()) yield chunk(c);
    for await (const [i, ev] of this.gen.events()) for (const c of this.#apply(i, ev)) yield chunk(c);
    if (includeUsage) yield { ...head, choices: [], usage: this.gen.usage(), timings: this.gen.timings() };
  }
}
