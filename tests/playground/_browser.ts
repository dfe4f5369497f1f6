/**
 * Test helpers for driving the playground in headless Chromium (Debian's `chromium` package)
 * through puppeteer-core: the launch flags this sandbox needs, a server process behind nginx
 * rendered from deploy/nginx/, a page that records its errors and CSP violations, and small
 * waits on the page's hooks (`data-testid`).
 */
import { ok as assert } from "node:assert/strict";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { findNginx, freePort, Nginx, Replica, sleep } from "../../scripts/deploy/cluster.ts";

// The functions passed to page.evaluate() and friends run in Chromium; Deno's type library has no
// DOM, so they see the page's globals untyped.
// deno-lint-ignore no-explicit-any
declare const document: any, MutationObserver: any;

export const CHROMIUM = "/usr/bin/chromium";
/** Where the screenshots go (kept after the run). */
export const ARTIFACTS: string = Deno.env.get("BN_TEST_ARTIFACTS") ?? "/tmp/bn-test-artifacts/playground";

const isFile = (p: string) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
};
const nginxBinary = findNginx();

/** Why the browser tests cannot run here ("" when they can). */
export const missing: string = [
  isFile(CHROMIUM) ? "" : `${CHROMIUM} is not installed (apt-get install chromium)`,
  nginxBinary ? "" : "nginx is not installed (apt-get install nginx-light)",
].filter(Boolean).join("; ");

/**
 * Headless Chromium with a fresh profile in `profile`. Without the background-networking flags it
 * tries to reach Google's services, which a closed network refuses.
 */
export function launch(profile: string): Promise<Browser> {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
    ],
  });
}

/** One server process (started as `deno task serve` starts it) and nginx in front of it. */
export class Site {
  constructor(readonly replica: Replica, readonly nginx: Nginx) {}

  static async start(dir: string, model: string, args: string[]): Promise<Site> {
    const replica = new Replica(0, freePort(), {
      model,
      args: ["--threads", "1", "--log-level", "warn", ...args],
    });
    replica.start();
    await replica.waitReady();
    Deno.mkdirSync(dir, { recursive: true });
    const nginx = new Nginx(dir, freePort(), [replica.port]);
    await nginx.start(nginxBinary!);
    return new Site(replica, nginx);
  }

  /** A metric of the server, read from it directly. */
  async metric(name: string): Promise<number> {
    const m = await this.replica.metrics();
    if (!m?.has(name)) throw new Error(`/metrics of ${this.replica.url} has no ${name}`);
    return m.get(name)!;
  }

  /** Waits until `/metrics` says `busy` slots are busy (fails after `ms`). */
  async slotsBusy(busy: number, ms = 5000): Promise<void> {
    const t0 = Date.now();
    let now;
    while ((now = await this.metric("bn_slots_busy")) !== busy) {
      assert(Date.now() - t0 < ms, `bn_slots_busy is ${now}, not ${busy}, after ${ms} ms`);
      await sleep(20);
    }
  }

  async close(): Promise<void> {
    await this.nginx.stop();
    await this.replica.stop("SIGKILL", 5000);
  }
}

/** A page and what went wrong in it. */
export interface Opened {
  readonly page: Page;
  /** Uncaught errors and console errors (the failed loads of provoked 4xx excepted). */
  readonly errors: string[];
  readonly status: number;
  readonly headers: Record<string, string>;
}

/** Opens `url` in a new tab at `viewport`, recording errors and CSP violations. */
export async function open(
  browser: Browser,
  url: string,
  viewport: Parameters<Page["setViewport"]>[0],
): Promise<Opened> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${(e as Error).message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of (400|401|429)/.test(m.text())) errors.push(m.text());
  });
  await page.evaluateOnNewDocument(() => {
    const w = globalThis as unknown as { cspViolations: string[] };
    w.cspViolations = [];
    document.addEventListener(
      "securitypolicyviolation",
      (e: { violatedDirective: string }) => w.cspViolations.push(e.violatedDirective),
    );
  });
  await page.setViewport(viewport);
  const res = await page.goto(url, { waitUntil: "load" });
  assert(res, `no response for ${url}`);
  return { page, errors, status: res.status(), headers: res.headers() };
}

/** The CSP violations the page reported. */
export const cspViolations = (page: Page): Promise<string[]> =>
  page.evaluate(() => (globalThis as unknown as { cspViolations: string[] }).cspViolations);

/** Waits until the model line starts with `id`; returns the line. */
export async function modelShown(page: Page, id: string): Promise<string> {
  await page.waitForFunction(
    (id) => document.querySelector("[data-testid=model]")?.textContent?.startsWith(id),
    { timeout: 15_000 },
    id,
  );
  return await page.$eval("[data-testid=model]", (e) => e.textContent ?? "");
}

/** Types the API key the page asks for (a 401 from /v1/models) and waits for the model line. */
export async function enterKey(page: Page, key: string, id: string): Promise<string> {
  await page.waitForFunction(
    () => document.querySelector("[data-testid=model]")?.textContent?.includes("API key"),
    { timeout: 15_000 },
  );
  await page.type("#api-key", key);
  await page.keyboard.press("Enter");
  return await modelShown(page, id);
}

/** Sets an input's value as a person would (select all, delete, type). */
export async function fill(page: Page, selector: string, value: string): Promise<void> {
  await page.click(selector, { count: 3 });
  await page.keyboard.press("Backspace");
  if (value) await page.type(selector, value);
}

/** An input's or textarea's value. */
export const valueOf = (page: Page, selector: string): Promise<string> =>
  page.$eval(selector, (e) => e.value);

/** Types `text` into the prompt and presses Enter. */
export async function ask(page: Page, text: string): Promise<void> {
  await page.type("[data-testid=prompt]", text);
  await page.keyboard.press("Enter");
}

/** Waits until `n` answers have a stats line and nothing is running; returns the last line. */
export async function answered(page: Page, n: number): Promise<string> {
  await page.waitForFunction(
    (n) =>
      document.querySelectorAll("[data-testid=stats]").length === n &&
      !document.body.classList.contains("busy"),
    { timeout: 30_000 },
    n,
  );
  return await lastStats(page);
}

export const lastStats = (page: Page): Promise<string> =>
  page.$$eval("[data-testid=stats]", (els) => els.at(-1)?.textContent ?? "");

export const lastAnswer = (page: Page): Promise<string> =>
  page.$$eval(".msg.assistant .text", (els) => els.at(-1)?.textContent ?? "");

export const count = (page: Page, selector: string): Promise<number> =>
  page.$$eval(selector, (els) => els.length);

/** Waits for error message number `n` and returns its text. */
export async function nthError(page: Page, n: number): Promise<string> {
  await page.waitForFunction(
    (n) => document.querySelectorAll(".msg.error").length >= n,
    { timeout: 15_000 },
    n,
  );
  return await page.$$eval(".msg.error", (els, n) => els[n - 1].textContent ?? "", n);
}

/** From now on, records every length the last answer's text takes (a MutationObserver). */
export async function recordGrowth(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = globalThis as unknown as { lengths: number[] };
    w.lengths = [];
    const log = document.querySelector("[data-testid=messages]");
    new MutationObserver(() => {
      const texts = log.querySelectorAll(".msg.assistant .text");
      const length = texts.length ? texts[texts.length - 1].textContent.length : 0;
      if (length && length !== w.lengths.at(-1)) w.lengths.push(length);
    }).observe(log, { subtree: true, characterData: true, childList: true });
  });
}

/** The lengths recorded since {@linkcode recordGrowth}. */
export const growth = (page: Page): Promise<number[]> =>
  page.evaluate(() => (globalThis as unknown as { lengths: number[] }).lengths);

/** Waits until the answer's text has grown in `n` separate updates. */
export async function grownTimes(page: Page, n: number): Promise<void> {
  await page.waitForFunction(
    (n) => (globalThis as unknown as { lengths: number[] }).lengths.length >= n,
    { timeout: 15_000 },
    n,
  );
}
