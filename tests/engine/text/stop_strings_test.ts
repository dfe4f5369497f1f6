import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { StopStringMatcher } from "../../../engine/text/stop_strings.ts";
import { rng } from "./_llama3_fixture.ts";

/** Feeds deltas; returns everything emitted (with flush when not stopped) and whether it stopped. */
function run(stops: string[], deltas: string[]): { out: string; stopped: boolean; emits: string[] } {
  const m = new StopStringMatcher(stops);
  const emits: string[] = [];
  let stopped = false;
  for (const d of deltas) {
    const r = m.push(d);
    emits.push(r.emit);
    stopped = r.stopped;
    if (stopped) break;
  }
  if (!stopped) emits.push(m.flush());
  return { out: emits.join(""), stopped, emits };
}

/** What a non-streaming server returns: the text before the earliest occurrence of any stop. */
function expected(stops: string[], text: string): string {
  let at = -1;
  for (const s of stops) {
    const i = s === "" ? -1 : text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at < 0 ? text : text.slice(0, at);
}

Deno.test("StopStringMatcher.push() emits everything when no stop matches", () => {
  assertEquals(run(["STOP"], ["Hello", " wor", "ld"]), {
    out: "Hello world",
    stopped: false,
    emits: ["Hello", " wor", "ld", ""],
  });
  assertEquals(run([], ["a", "b"]).out, "ab");
  assertEquals(run([""], ["a", "b"]).out, "ab");
});

Deno.test("StopStringMatcher.push() holds back a possible stop prefix only while it can match", () => {
  const m = new StopStringMatcher(["\nUser:"]);
  assertEquals(m.push("Sure.\nUs"), { emit: "Sure.", stopped: false });
  assertEquals(m.push("ually"), { emit: "\nUsually", stopped: false });
  assertEquals(m.push("\nUser: hi"), { emit: "", stopped: true });
  assertEquals(m.push("more"), { emit: "", stopped: true });
  assertEquals(m.flush(), "");
});

Deno.test("StopStringMatcher.push() finds a stop spanning many deltas", () => {
  assertEquals(run(["<|im_end|>"], ["ok", "<", "|", "im", "_", "end", "|", ">", "tail"]), {
    out: "ok",
    stopped: true,
    emits: ["ok", "", "", "", "", "", "", ""],
  });
});

Deno.test("StopStringMatcher handles overlapping stops and stops inside one delta", () => {
  assertEquals(run(["abc", "bcd"], ["xabcd"]).out, "x");
  assertEquals(run(["bcd", "abc"], ["xa", "bcd"]).out, "x");
  assertEquals(run(["aab"], ["a", "a", "a", "b"]).out, "a"); // "aaab": the held prefix moves along
  assertEquals(run(["ab", "b"], ["a", "b"]).out, "");
  assertEquals(run(["x"], ["before x after"]).out, "before ");
});

Deno.test("StopStringMatcher.flush() returns held text when the stream ends", () => {
  const m = new StopStringMatcher(["END"]);
  assertEquals(m.push("almost EN"), { emit: "almost ", stopped: false });
  assertEquals(m.flush(), "EN");
});

Deno.test("StopStringMatcher works with unicode and never splits a surrogate pair", () => {
  assertEquals(run(["🛑"], ["go ", "go 🛑 no"]).out, "go go ");
  assertEquals(run(["日本語"], ["これは日", "本", "語です"]).out, "これは");
  const { emits } = run(["😀x"], ["a😀", "b"]);
  assertEquals(emits, ["a", "😀b", ""]);
  assert(emits.every((e) => e.isWellFormed()));
});

Deno.test("StopStringMatcher never leaks any part of a stop string (random deltas)", () => {
  const next = rng(31337);
  const alphabet = ["a", "b", "c", "\n", "😀", "<", "|", ">"];
  for (let i = 0; i < 3000; i++) {
    const pick = (n: number) =>
      Array.from({ length: n }, () => alphabet[Math.floor(next() * alphabet.length)]).join("");
    const stops = Array.from({ length: 1 + Math.floor(next() * 3) }, () => pick(1 + Math.floor(next() * 4)));
    const text = pick(Math.floor(next() * 30));
    const deltas: string[] = [];
    for (let at = 0; at < text.length;) {
      let len = 1 + Math.floor(next() * 4);
      if (
        at + len < text.length && text.charCodeAt(at + len) >= 0xdc00 && text.charCodeAt(at + len) <= 0xdfff
      ) len++;
      deltas.push(text.slice(at, at + len));
      at += len;
    }
    const { out, stopped } = run(stops, deltas);
    const want = expected(stops, text);
    // Streaming stops at the first completed stop; a non-streaming scan picks the earliest start.
    // Both agree unless a longer stop starting earlier would complete later; then streaming stops
    // at a later start, so its output may be longer but is still a prefix free of any stop.
    assert(out.startsWith(want) || want.startsWith(out), JSON.stringify({ stops, text, out }));
    assertEquals(stopped, stops.some((s) => text.includes(s)));
    for (const s of stops) assert(!out.includes(s), JSON.stringify({ stops, text, out }));
    assert(text.startsWith(out));
    if (!stopped) assertEquals(out, text);
  }
});
