/**
 * The playground in a real browser: headless Chromium driven over the DevTools protocol by
 * puppeteer-core, against server processes started as `deno task serve` starts them (read-only
 * permissions), each behind nginx rendered from deploy/nginx/bitnet-server.conf.
 *
 * - The embedded default model with an API key: the page asks for the key and keeps it in the tab,
 *   Enter sends and Shift+Enter is a newline, two turns stream in with their stats lines, a
 *   too-long request shows the server's 400, New chat starts over, and the page fits a phone.
 *   Screenshots of finished exchanges go to ARTIFACTS.
 * - A synthetic model whose greedy output is an HTML payload (tests/playground/_html_model.ts), one
 *   slot and no queue: the text grows in separate updates, Stop frees the slot (/metrics), the
 *   markup stays text, a second request gets 429 with Retry-After, and killing the server
 *   mid-answer shows a dropped connection.
 *
 * Skipped, with the reason, where Chromium or nginx is not installed (CI installs both).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { DEFAULT_MODEL_PATH } from "../../engine/model/default_model.ts";
import { PLAYGROUND_CSP } from "../../routes/playground.ts";
import {
  answered,
  ARTIFACTS,
  ask,
  count,
  cspViolations,
  enterKey,
  fill,
  grownTimes,
  growth,
  lastAnswer,
  lastStats,
  launch,
  missing,
  modelShown,
  nthError,
  open,
  recordGrowth,
  Site,
  valueOf,
} from "./_browser.ts";
import { sleep } from "../../scripts/deploy/cluster.ts";
import { htmlModel } from "./_html_model.ts";

// deno-lint-ignore no-explicit-any
declare const document: any, innerWidth: number, innerHeight: number;

if (missing) console.warn(`tests/playground/browser_test.ts: skipped: ${missing}`);

const KEY = "sk-playground-test";
const PAYLOAD = `<img src=x onerror="document.title='pwned'">`;
const TITLE = "Playground · ternary edge server";
const WIDE = { width: 1100, height: 720 };
/** TTFT, tok/s, tokens, prompt, cached, finish_reason. */
const STATS = /^TTFT (\d+) ms · ([\d.]+) tok\/s · (\d+) tokens · prompt (\d+), (\d+) cached · (stop|length)$/;

/** A test with a scratch folder, servers started by `fn`, and a browser; all closed at the end. */
function browserTest(name: string, fn: (t: Deno.TestContext, s: Scratch) => Promise<void>) {
  Deno.test({
    name,
    ignore: missing !== "",
    sanitizeOps: false,
    sanitizeResources: false,
    async fn(t) {
      const work = Deno.makeTempDirSync({ prefix: "bn-browser-test-" });
      const sites: Site[] = [];
      const scratch = {
        work,
        site: async (model: string, args: string[]) => {
          const s = await Site.start(`${work}/nginx-${sites.length}`, model, args);
          sites.push(s);
          return s;
        },
        browser: await launch(`${work}/profile`),
      };
      Deno.mkdirSync(ARTIFACTS, { recursive: true });
      try {
        await fn(t, scratch);
      } finally {
        await scratch.browser.close();
        for (const s of sites) await s.close();
        Deno.removeSync(work, { recursive: true });
      }
    },
  });
}

interface Scratch {
  readonly work: string;
  site(model: string, args: string[]): Promise<Site>;
  readonly browser: Awaited<ReturnType<typeof launch>>;
}

browserTest(
  "playground in Chromium behind nginx: key, two streamed turns, stats, 400, New chat, phone",
  async (t, s) => {
    const a = await s.site(DEFAULT_MODEL_PATH, ["--api-key", KEY]);
    const card = (await (await fetch(`${a.replica.url}/v1/models`, {
      headers: { Authorization: `Bearer ${KEY}` },
    })).json()).data[0];
    const { page, errors, status, headers } = await open(s.browser, `${a.nginx.url}/`, WIDE);

    await t.step(
      "GET / through nginx has the strict CSP; the page asks for the key, keeps it in the tab",
      async () => {
        assertEquals(status, 200);
        assertEquals(headers["content-security-policy"], PLAYGROUND_CSP);
        assertEquals(headers["x-upstream"], `127.0.0.1:${a.replica.port}`);
        const line = await enterKey(page, KEY, card.id);
        assert(line.includes(`ctx ${card.meta.n_ctx}`) && line.includes(`kernel ${card.meta.kernel}`), line);
        // Reproducible answers that leave room in the 256-token context for a second turn.
        await fill(page, "#seed", "3");
        await fill(page, "#max-tokens", "40");
        const stored = await page.evaluate(() => ({
          session: Object.fromEntries(Object.entries(sessionStorage)),
          local: localStorage.length,
          cookie: document.cookie,
        }));
        assertEquals(stored, { session: { "bn-playground-api-key": KEY }, local: 0, cookie: "" });
      },
    );

    let first: number[] = [];
    await t.step(
      "Shift+Enter is a newline, Enter sends; the answer streams in with its stats line",
      async () => {
        await page.type("[data-testid=prompt]", "Tell me about the jury.");
        await page.keyboard.down("Shift");
        await page.keyboard.press("Enter");
        await page.keyboard.up("Shift");
        assertEquals(await valueOf(page, "[data-testid=prompt]"), "Tell me about the jury.\n");
        assertEquals(await count(page, ".msg"), 0);
        await page.keyboard.press("Backspace");
        await page.keyboard.press("Enter");
        const stats = await answered(page, 1);
        const m = STATS.exec(stats);
        assert(m, `stats line: ${stats}`);
        first = m.slice(1, 6).map(Number);
        const [ttft, rate, tokens, prompt, cached] = first;
        assert(ttft > 0 && rate > 0 && tokens > 0 && prompt > 0 && cached === 0, stats);
        assert((await lastAnswer(page)).trim().length > 0);
        assertEquals(await valueOf(page, "[data-testid=prompt]"), "");
      },
    );

    await t.step(
      "the second turn carries the first: a longer prompt, its start from the KV cache",
      async () => {
        await page.type("[data-testid=prompt]", "What did the mayor say?");
        await page.click("[data-testid=send]");
        const stats = await answered(page, 2);
        const m = STATS.exec(stats);
        assert(m, stats);
        const [, , tokens, prompt] = first;
        assert(Number(m[4]) > prompt + tokens - 1, `prompt ${m[4]} after ${prompt} + ${tokens}`);
        // the whole first turn is reused: its prompt and every generated token but the last (sampled,
        // never fed), the reply matched as the tokens it was generated as
        assertEquals(Number(m[5]), prompt + tokens - 1, `cached ${m[5]} after ${prompt} + ${tokens}`);
        assertEquals(await count(page, ".msg.user"), 2);
        await page.screenshot({ path: `${ARTIFACTS}/exchange.png` });
        assertEquals(await a.metric('bn_http_requests_total{route="/v1/chat/completions",status="200"}'), 2);
      },
    );

    await t.step("a 400 shows the server's message and gives the text back to the box", async () => {
      await fill(page, "#max-tokens", "100000");
      await ask(page, "Hello");
      const error = await nthError(page, 1);
      assert(error.includes("(400)") && error.includes("context holds 256"), error);
      assertEquals(await valueOf(page, "[data-testid=prompt]"), "Hello");
      assertEquals(await count(page, ".msg.user"), 2);
      await fill(page, "#max-tokens", "40");
      await fill(page, "[data-testid=prompt]", "");
    });

    await t.step("New chat forgets the conversation", async () => {
      await page.click("[data-testid=reset]");
      assertEquals(await count(page, ".msg"), 0);
      await ask(page, "Tell me about the jury.");
      const m = STATS.exec(await answered(page, 1));
      assert(m, await lastStats(page));
      // The first question's prompt again: cached from the first turn, all but its last token.
      assertEquals([Number(m[4]), Number(m[5])], [first[3], first[3] - 1]);
    });
    assertEquals([errors, await cspViolations(page)], [[], []]);
    await page.close();

    await t.step("at phone width: one column, nothing off screen", async () => {
      const phone = await open(s.browser, `${a.nginx.url}/`, {
        width: 390,
        height: 844,
        isMobile: true,
        hasTouch: true,
      });
      const p = phone.page;
      // A new tab has its own sessionStorage: the key is asked for again (which opens the settings).
      await enterKey(p, KEY, card.id);
      await p.click("#settings summary");
      assert(!(await p.$eval("#settings", (d) => d.open)), "the settings do not fold");
      await fill(p, "#seed", "3");
      await fill(p, "#max-tokens", "40");
      await ask(p, "Tell me about the weather.");
      assert(STATS.test(await answered(p, 1)), await lastStats(p));
      const layout = await p.evaluate(() => ({
        scrollWidth: document.documentElement.scrollWidth,
        scrollHeight: document.documentElement.scrollHeight,
        width: innerWidth,
        height: innerHeight,
        boxes: ["prompt", "send", "stop", "messages", "reset"].map((id) =>
          document.querySelector(`[data-testid=${id}]`).getBoundingClientRect().toJSON()
        ),
      }));
      assert(layout.scrollWidth <= layout.width, `sideways scroll: ${JSON.stringify(layout)}`);
      assert(layout.scrollHeight <= layout.height, `the page scrolls: ${JSON.stringify(layout)}`);
      for (const r of layout.boxes) {
        assert(
          r.left >= 0 && r.right <= layout.width && r.top >= 0 && r.bottom <= layout.height,
          JSON.stringify(r),
        );
      }
      await p.screenshot({ path: `${ARTIFACTS}/phone.png` });
      assertEquals([phone.errors, await cspViolations(p)], [[], []]);
    });
  },
);

browserTest(
  "playground in Chromium behind nginx: growth, Stop frees the slot, HTML stays text, 429, drop",
  async (t, s) => {
    const model = await htmlModel(PAYLOAD, `${s.work}/html.gguf`, { ctx: 8192 });
    const b = await s.site(model, ["--slots", "1", "--max-queue", "0", "--ctx", "8192"]);
    const card = (await (await fetch(`${b.replica.url}/v1/models`)).json()).data[0];
    const { page, errors } = await open(s.browser, `${b.nginx.url}/`, WIDE);
    await modelShown(page, card.id);
    await fill(page, "#temperature", "0");
    await fill(page, "#max-tokens", "6000");

    await t.step(
      "the answer grows in separate updates; Stop aborts it and the server frees the slot",
      async () => {
        await recordGrowth(page);
        await ask(page, "Hello");
        await grownTimes(page, 3);
        assertEquals(await b.metric("bn_slots_busy"), 1);
        await page.click("[data-testid=stop]");
        const stats = await answered(page, 1);
        await b.slotsBusy(0);
        const lengths = await growth(page);
        assert(lengths.length >= 3 && lengths.every((n, i) => i === 0 || n > lengths[i - 1]), `${lengths}`);
        assert(/^TTFT \d+ ms · ≈[\d.]+ tok\/s · ≈\d+ tokens · stopped by you$/.test(stats), stats);
        // The engine stopped well short of max_tokens, and stays stopped.
        const steps = await b.metric("bn_engine_steps_total");
        assert(steps > 3 && steps < 6000, `${steps} forward steps for max_tokens 6000`);
        await sleep(300);
        assertEquals(await b.metric("bn_engine_steps_total"), steps);
        assertEquals(await b.metric('bn_errors_total{type="client_closed_request",code="client_closed"}'), 1);
        assertEquals(await b.metric("bn_requests_inflight"), 0);
      },
    );

    await t.step("HTML in the model's output stays text: no element, no script, no CSP report", async () => {
      const stopped = await lastAnswer(page);
      assert(stopped.startsWith(PAYLOAD.repeat(3)), stopped.slice(0, 200));
      await page.click("[data-testid=reset]");
      await fill(page, "#max-tokens", "3");
      await ask(page, "Again");
      const stats = await answered(page, 1);
      assert(
        /^TTFT \d+ ms · ([\d.]+ tok\/s · )?3 tokens · prompt \d+, \d+ cached · length$/.test(stats),
        stats,
      );
      assertEquals(await lastAnswer(page), PAYLOAD.repeat(3));
      const dom = await page.evaluate(() => ({
        images: document.querySelectorAll("img").length,
        elementsInAnswers: document.querySelectorAll(".msg.assistant .text *").length,
        title: document.title,
      }));
      assertEquals(dom, { images: 0, elementsInAnswers: 0, title: TITLE });
      assertEquals(await cspViolations(page), []);
    });

    await t.step("New chat mid-answer stops it, frees the slot, and the next turn stands alone", async () => {
      await fill(page, "#max-tokens", "6000");
      await recordGrowth(page);
      await ask(page, "Hello");
      await grownTimes(page, 3);
      await page.click("[data-testid=reset]");
      await b.slotsBusy(0);
      assertEquals(await count(page, ".msg"), 0);
      await fill(page, "#max-tokens", "3");
      await ask(page, "Hi");
      const m = /prompt (\d+),/.exec(await answered(page, 1));
      const alone = await (await fetch(`${b.replica.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 1 }),
      })).json();
      assertEquals(Number(m?.[1]), alone.usage.prompt_tokens);
      await page.click("[data-testid=reset]");
    });

    await t.step("a busy server: the 429 and its Retry-After are shown, the text given back", async () => {
      const res = await fetch(`${b.replica.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          messages: [{ role: "user", content: "x" }],
          temperature: 0,
          max_tokens: 6000,
          stream: true,
        }),
      });
      const reader = res.body!.getReader();
      await reader.read();
      await b.slotsBusy(1); // the only slot is taken
      try {
        await ask(page, "Busy?");
        const error = await nthError(page, 1);
        assert(/busy \(429\).*Retry after \d+ s\./.test(error), `${error}\n${b.nginx.errorLog()}`);
        assertEquals(await valueOf(page, "[data-testid=prompt]"), "Busy?");
      } finally {
        await reader.cancel();
      }
      await b.slotsBusy(0);
      await fill(page, "[data-testid=prompt]", "");
    });

    await t.step("the server dies mid-answer: a dropped connection, the partial answer kept", async () => {
      await page.click("[data-testid=reset]");
      await fill(page, "#max-tokens", "6000");
      await recordGrowth(page);
      await ask(page, "Last one");
      await grownTimes(page, 3);
      await b.replica.stop("SIGKILL");
      const error = await nthError(page, 1);
      assert(/^Connection lost: .*incomplete\.$/.test(error), error);
      assert((await lastAnswer(page)).startsWith(PAYLOAD), "the partial answer stays");
      assert(/≈\d+ tokens$/.test(await lastStats(page)), await lastStats(page));
      assertEquals(await page.$eval("[data-testid=send]", (e) => e.disabled), false);
    });
    // Chromium logs the dropped connection as a failed load; nothing else may have gone wrong.
    assertEquals(errors.filter((e) => !/ERR_|Failed to load/.test(e)), []);
  },
);
