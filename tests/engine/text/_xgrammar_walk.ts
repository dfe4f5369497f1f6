/**
 * Test helpers over XGrammar itself (no model): whether a grammar accepts a string, and random
 * documents drawn from a grammar with a one-character-per-token vocabulary.
 */
import { loadXGrammar, type XGrammarInstance } from "../../../engine/text/_xgrammar.ts";

let inst: XGrammarInstance | null = null;
const xg = () => (inst ??= loadXGrammar()).xg;

/** Whether `ebnf` (root rule `root`) accepts exactly `input`; throws with XGrammar's message if it does not parse. */
export async function accepts(ebnf: string, input: string): Promise<boolean> {
  let g;
  try {
    g = await xg().Grammar.fromEBNF(ebnf);
  } catch (e) {
    const log = inst!.takeLog();
    inst = null;
    throw new Error(`XGrammar refused the grammar: ${log.join(" | ")}\n${ebnf}`, { cause: e });
  }
  try {
    return await xg().Testings.isGrammarAcceptString(g, input);
  } finally {
    g.dispose();
  }
}

/** Characters of the walk vocabulary: printable ASCII, a few non-ASCII ones, newline and tab. */
export const WALK_CHARS: readonly string[] = [
  ...Array.from({ length: 0x5f }, (_, i) => String.fromCharCode(0x20 + i)),
  "é",
  "ß",
  "😀",
  "\n",
  "\t",
  "\u2028",
];

/** Draws documents from a grammar: each step picks an allowed character, closing ones more often. */
export class Walker {
  readonly #vocab = [...WALK_CHARS, "</s>"];
  #compiler: Promise<{ compile(ebnf: string): Promise<unknown> }> | null = null;
  #seed: number;

  constructor(seed = 1) {
    this.#seed = seed;
  }

  #random(): number {
    this.#seed = (Math.imul(this.#seed, 1103515245) + 12345) >>> 0;
    return this.#seed / 4294967296;
  }

  /** Up to `n` documents (walks that did not end within `maxSteps` characters are dropped). */
  async walk(ebnf: string, n: number, maxSteps = 300): Promise<string[]> {
    const x = xg();
    const stop = this.#vocab.length - 1;
    this.#compiler ??= (async () => {
      const info = await x.TokenizerInfo.createTokenizerInfo(this.#vocab, "raw", false, this.#vocab.length, [
        stop,
      ]);
      const c = await x.GrammarCompiler.createGrammarCompiler(info, false);
      return { compile: (e: string) => c.compileGrammar(e) };
    })();
    // deno-lint-ignore no-explicit-any
    const compiled = await (await this.#compiler).compile(ebnf) as any;
    const weight = (t: number) => t === stop ? 40 : '"]},'.includes(this.#vocab[t]) ? 8 : 1;
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const m = await x.GrammarMatcher.createGrammarMatcher(compiled);
      let text = "";
      for (let step = 0; step < maxSteps; step++) {
        const mask = await m.getNextTokenBitmask();
        const allowed: number[] = [];
        for (let t = 0; t < this.#vocab.length; t++) if ((mask[t >> 5] >>> (t & 31)) & 1) allowed.push(t);
        if (allowed.length === 0) throw new Error(`dead end after ${JSON.stringify(text)}`);
        let r = this.#random() * allowed.reduce((a, t) => a + weight(t), 0), pick = allowed[0];
        for (const t of allowed) {
          r -= weight(t);
          if (r < 0) {
            pick = t;
            break;
          }
        }
        if (pick === stop) {
          out.push(text);
          break;
        }
        if (!m.acceptToken(pick)) throw new Error(`token ${pick} was allowed but not accepted`);
        text += this.#vocab[pick];
      }
      m.dispose();
    }
    compiled.dispose();
    return out;
  }
}
