/**
 * `POST /v1/completions`: prompts (text or token ids) -> `n` generations each -> OpenAI's
 * `text_completion` object or stream. `echo` prepends the prompt; with `logprobs` it also returns
 * the prompt tokens' log-probabilities (first entry null), so perplexity can be measured through
 * the API with `max_tokens: 0`.
 *
 * @module
 */
import { Hono } from "hono";
import type { Engine } from "../engine/run/engine.ts";
import type { GenerationEvent, LogprobInfo } from "../engine/run/sequence.ts";
import type { Tokenizer } from "../engine/text/tokenizer.ts";
import { readJson } from "./body.ts";
import type { AppEnv, Deps } from "./context.ts";
import { checkIds, Generation, type Meta, respond, responseMeta, runSpecs } from "./generation.ts";
import { type CompletionLogprobs, completionLogprobs } from "./logprobs.ts";
import { CompletionRequest } from "./schemas.ts";

/** The completions routes. */
export function completionRoutes(deps: Deps): Hono<AppEnv> {
  return new Hono<AppEnv>().post("/v1/completions", async (c) => {
    const body = await readJson(c, CompletionRequest);
    const engine = c.get("engine");
    const prompts = toPrompts(engine, body.prompt);
    const logprobs = body.logprobs ?? undefined, echo = !!body.echo;
    const opts = { maxTokens: body.max_tokens, logprobs, promptLogprobs: echo && logprobs !== undefined };
    const specs = runSpecs(engine, prompts.map((p) => p.ids), body, opts);
    const gen = new Generation(c, deps, specs, { param: "prompt", user: body.user });
    const f = new Formatter(gen, engine.tokenizer, echo ? prompts : null, logprobs !== undefined);
    const meta = responseMeta(c, "cmpl");
    const usage = !!body.stream_options?.include_usage;
    return respond(c, gen, !!body.stream, {
      chunks: () => f.chunks(meta, usage),
      whole: () => f.completion(meta),
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

  async completion(meta: Meta) {
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
    return {
      id: meta.id,
      object: "text_completion",
      created: meta.created,
      model: meta.model,
      choices: this.#choices.map((ch, i) => ({
        index: i,
        text: ch.text,
        logprobs: this.withLogprobs ? merged[i] : null,
        finish_reason: ch.finish,
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
    if (includeUsage) yield { ...head, choices: [], usage: this.gen.usage() };
  }
}
