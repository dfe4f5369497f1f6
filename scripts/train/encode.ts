/**
 * Tokenizes texts with the trained BPE (no special tokens) for the Python scripts, which have no
 * Unicode-property regex engine for the LLaMA-3 pre-tokenizer.
 *
 *   echo '["Hello there."]' | deno run --allow-read scripts/train/encode.ts [tokenizer.json]
 *   -> [[...ids...]]
 */
import { BpeEncoder } from "./bpe.ts";

const path = Deno.args[0] ?? "scripts/train/work/tokenizer.json";
const tok = JSON.parse(Deno.readTextFileSync(path));
const specials = (tok.token_type as number[]).filter((t) => t !== 1).length;
const enc = new BpeEncoder({ tokens: tok.tokens.slice(0, tok.tokens.length - specials), merges: tok.merges });
const texts: string[] = JSON.parse(await new Response(Deno.stdin.readable).text());
console.log(JSON.stringify(texts.map((t) => enc.encode(t))));
