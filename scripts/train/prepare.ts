/**
 * Step 1 of the embedded-model pipeline: Brown corpus -> prose -> train/held-out split -> byte-level
 * BPE -> token id files. Run by `scripts/train/run.sh`; everything lands in `scripts/train/work/`.
 *
 *   deno run --allow-read --allow-write scripts/train/prepare.ts [--corpus DIR] [--out DIR]
 *
 * Outputs (uint16 little-endian token ids):
 * - `train.txt`, `heldout.txt`: the prose, one paragraph per line, a blank line between documents.
 * - `split.json`: which corpus files went where, and the counts.
 * - `tokenizer.json`: `{tokens, merges, token_type, bos_id, eos_id, eot_id, pad_id}`.
 * - `train.bin`: every training document as `BOS text EOS`, with short chat examples
 *   (`BOS [System: s EOT] User: u EOT Assistant: a EOT`) built from training sentences in between.
 * - `heldout.bin`: every held-out document as `BOS text EOS` (plain text only, never trained on).
 */
import { type BrownDoc, docText, parseBrownFile } from "./brown.ts";
import { BpeEncoder, countPretokens, trainBpe } from "./bpe.ts";
import { buildChatExample, mulberry32, shuffle } from "./chat.ts";
import { flags } from "./flags.ts";

const args = flags({
  corpus: "scripts/train/work/package",
  out: "scripts/train/work",
  vocab: "4096",
  seed: "1234",
  "chat-share": "0.08",
});
const VOCAB = Number(args.vocab);
const SEED = Number(args.seed);
const CHAT_SHARE = Number(args["chat-share"]);
const SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"];
const N_SPECIAL = 8; // the three above + reserved tokens, so the vocabulary is a round 4096
const N_BPE = VOCAB - N_SPECIAL;
const BOS = N_BPE, EOS = N_BPE + 1, EOT = N_BPE + 2;

// --- corpus -> documents -----------------------------------------------------------------------
const names = [...Deno.readDirSync(args.corpus)].map((e) => e.name).filter((n) => /^c[a-r]\d\d$/.test(n))
  .sort();
if (names.length !== 500) {
  throw new Error(`Expected 500 Brown files in ${args.corpus}, found ${names.length}`);
}
const docs: BrownDoc[] = names.map((n) => parseBrownFile(n, Deno.readTextFileSync(`${args.corpus}/${n}`)));

// --- held-out split: per genre, a seeded choice of max(1, round(n/16)) whole files --------------
const rng = mulberry32(SEED);
const heldIds = new Set<string>();
for (const cat of [...new Set(docs.map((d) => d.category))].sort()) {
  const ids = shuffle(docs.filter((d) => d.category === cat).map((d) => d.id), rng);
  for (const id of ids.slice(0, Math.max(1, Math.round(ids.length / 16)))) heldIds.add(id);
}
const train = docs.filter((d) => !heldIds.has(d.id));
const held = docs.filter((d) => heldIds.has(d.id));
const trainTexts = train.map(docText);
const heldTexts = held.map(docText);
const chars = (xs: string[]) => xs.reduce((s, x) => s + x.length, 0);
const heldShare = chars(heldTexts) / (chars(heldTexts) + chars(trainTexts));
if (heldShare < 0.05) throw new Error(`held-out share ${heldShare} < 5%`);

// --- tokenizer ---------------------------------------------------------------------------------
const t0 = performance.now();
const bpe = trainBpe(countPretokens(trainTexts), N_BPE);
if (bpe.tokens.length !== N_BPE) throw new Error(`BPE stopped at ${bpe.tokens.length} tokens`);
const enc = new BpeEncoder(bpe);
const tokens = [...bpe.tokens, ...SPECIALS];
for (let i = 0; tokens.length < VOCAB; i++) tokens.push(`<|reserved_special_token_${i}|>`);
const tokenType = tokens.map((_, i) => (i < N_BPE ? 1 : 3));
console.log(`BPE: ${bpe.merges.length} merges in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

// --- token streams -----------------------------------------------------------------------------
const heldStream: number[] = [];
for (const t of heldTexts) heldStream.push(BOS, ...enc.encode(t), EOS);
const textStream: number[][] = trainTexts.map((t) => [BOS, ...enc.encode(t), EOS]);
const textTokens = textStream.reduce((s, x) => s + x.length, 0);

// Chat examples: a sentence as the user turn, the sentence(s) after it as the reply.
const chatRng = mulberry32(SEED + 1);
const candidates: string[][] = [];
for (const d of train) {
  for (let p = 0; p < d.paragraphs.length; p++) {
    const para = d.paragraphs[p];
    const next = d.paragraphs[p + 1] ?? [];
    const sents = [...para, ...next];
    if (para.length >= 1 && sents.length >= 2) candidates.push(sents);
  }
}
shuffle(candidates, chatRng);
const chats: number[][] = [];
let chatTokens = 0;
for (const sents of candidates) {
  if (chatTokens >= CHAT_SHARE * textTokens / (1 - CHAT_SHARE)) break;
  const ex = buildChatExample(sents, chatRng, enc, { bos: BOS, eot: EOT });
  if (ex === undefined) continue;
  chats.push(ex);
  chatTokens += ex.length;
}
// Interleave: after each training document, its share of chat examples.
const trainStream: number[] = [];
let c = 0;
for (let i = 0; i < textStream.length; i++) {
  trainStream.push(...textStream[i]);
  const upto = Math.round((chats.length * (i + 1)) / textStream.length);
  for (; c < upto; c++) trainStream.push(...chats[c]);
}

// --- write -------------------------------------------------------------------------------------
const out = args.out;
Deno.mkdirSync(out, { recursive: true });
const writeU16 = (path: string, ids: number[]) =>
  Deno.writeFileSync(path, new Uint8Array(new Uint16Array(ids).buffer));
Deno.writeTextFileSync(`${out}/train.txt`, trainTexts.join("\n"));
Deno.writeTextFileSync(`${out}/heldout.txt`, heldTexts.join("\n"));
writeU16(`${out}/train.bin`, trainStream);
writeU16(`${out}/heldout.bin`, heldStream);
Deno.writeTextFileSync(
  `${out}/tokenizer.json`,
  JSON.stringify({
    model: "gpt2",
    pre: "llama-bpe",
    tokens,
    merges: bpe.merges,
    token_type: tokenType,
    bos_id: BOS,
    eos_id: EOS,
    eot_id: EOT,
    pad_id: EOS,
  }),
);
const stats = {
  seed: SEED,
  heldout_files: held.map((d) => d.id),
  train_files: train.length,
  heldout_char_share: heldShare,
  train_chars: chars(trainTexts),
  heldout_chars: chars(heldTexts),
  train_words: trainTexts.reduce((s, t) => s + t.split(/\s+/).filter(Boolean).length, 0),
  heldout_words: heldTexts.reduce((s, t) => s + t.split(/\s+/).filter(Boolean).length, 0),
  vocab: VOCAB,
  bpe_tokens: N_BPE,
  merges: bpe.merges.length,
  train_text_tokens: textTokens,
  train_chat_examples: chats.length,
  train_chat_tokens: chatTokens,
  train_tokens: trainStream.length,
  heldout_tokens: heldStream.length,
};
Deno.writeTextFileSync(`${out}/split.json`, JSON.stringify(stats, null, 2) + "\n");
console.log(JSON.stringify({ ...stats, heldout_files: held.length }));
