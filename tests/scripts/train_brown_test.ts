import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { detokenizeParagraph, docText, parseBrownFile, untag } from "../../scripts/train/brown.ts";

const words = (s: string) => s.split(" ").map((t) => untag(t).word);

Deno.test("untag() splits at the last slash so words may contain one", () => {
  assertEquals(untag("The/at"), { word: "The", tag: "at" });
  assertEquals(untag("1/2/cd"), { word: "1/2", tag: "cd" });
  assertEquals(untag("Atlanta's/np$"), { word: "Atlanta's", tag: "np$" });
  assertEquals(untag("noslash"), { word: "noslash", tag: "" });
});

Deno.test("detokenizeParagraph() restores spacing, double quotes and American punctuation order", () => {
  const s = words(
    "``/`` Only/rb a/at few/ap ''/'' ,/, the/at jury/nn said/vbd ,/, ``/`` were/bed received/vbn ''/'' ./.",
  );
  assertEquals(detokenizeParagraph([s]), ['"Only a few," the jury said, "were received."']);
  const q = words("Is/bez it/pps ``/`` fair/jj ''/'' ?/. ?/.");
  assertEquals(detokenizeParagraph([q]), ['Is it "fair?"']);
});

Deno.test("detokenizeParagraph() collapses the doubled ; ? ! and the period after an abbreviation", () => {
  assertEquals(detokenizeParagraph([words("trade/nn ;/. ;/. and/cc more/ap !/. !/.")]), ["trade; and more!"]);
  assertEquals(detokenizeParagraph([words("Ivan/np Allen/np Jr./np ./.")]), ["Ivan Allen Jr."]);
});

Deno.test("detokenizeParagraph() toggles single quotes across the sentences of a paragraph", () => {
  const a = words("he/pps said/vbd ,/, '/' Don't/do* worry/vb ./.");
  const b = words("It/pps is/bez fine/jj '/' ./.");
  assertEquals(detokenizeParagraph([a, b]), ["he said, 'Don't worry.", "It is fine'."]);
});

Deno.test("detokenizeParagraph() keeps brackets tight and dashes spaced", () => {
  const s = words("a/at ``/`` (/( test/nn )/) ''/'' --/-- yes/rb :/: done/vbn ./.");
  assertEquals(detokenizeParagraph([s]), ['a "(test)" -- yes: done.']);
});

Deno.test("parseBrownFile() groups lines into paragraphs and gives headlines their own line", () => {
  const text = "\n\n\tThe/at jury/nn met/vbd ./.\nIt/pps adjourned/vbd ./.\n\n\n" +
    "Merger/nn-hl proposed/vbn-hl \nHowever/rb ,/, it/pps agreed/vbd ./.\n";
  const doc = parseBrownFile("ca01", text);
  assertEquals(doc.category, "a");
  assertEquals(doc.paragraphs, [["The jury met.", "It adjourned."], ["Merger proposed"], [
    "However, it agreed.",
  ]]);
  assertEquals(docText(doc), "The jury met. It adjourned.\nMerger proposed\nHowever, it agreed.\n");
});
