/**
 * `GET /`: the chat playground, static files from the top-level `playground/` folder (plain HTML,
 * CSS and JavaScript modules, no build step, nothing fetched from elsewhere). They are read once when
 * the app is built, with the server's read-only permission; the page talks to the server only
 * through its public API (`/v1/models`, `/v1/chat/completions`, `/tokenize`).
 *
 * `/` answers `index.html` with a strict Content-Security-Policy; the other files answer at
 * `/playground/NAME`. Responses carry an ETag and `no-cache`, so a browser revalidates after an
 * upgrade.
 *
 * @module
 */
import { type Context, Hono } from "hono";
import type { AppEnv } from "./context.ts";

/** The folder the page is served from. */
export const PLAYGROUND_DIR: URL = new URL("../playground/", import.meta.url);

/**
 * The page's policy: its own scripts, styles, images and API only; no inline code, no plugins, no
 * framing, no form posts, no `<base>`.
 */
export const PLAYGROUND_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "font-src 'none'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
};

interface Asset {
  readonly body: Uint8Array<ArrayBuffer>;
  readonly type: string;
  readonly etag: string;
}

/** The playground's files, read and ready to serve. */
export interface Playground {
  /** URL path -> file, `/` being `index.html`. */
  readonly assets: ReadonlyMap<string, Asset>;
}

/**
 * Reads the playground's files (one flat folder; files of unknown types are skipped).
 *
 * @throws {TypeError} naming the folder when it or its `index.html` cannot be read
 *
 * @example
 * ```ts ignore
 * const page = await loadPlayground();
 * page.assets.get("/")!.type; // "text/html; charset=utf-8"
 * ```
 */
export async function loadPlayground(dir: URL = PLAYGROUND_DIR): Promise<Playground> {
  const assets = new Map<string, Asset>();
  const where = decodeURIComponent(dir.pathname);
  try {
    for await (const entry of Deno.readDir(dir)) {
      const type = TYPES[entry.name.slice(entry.name.lastIndexOf(".") + 1)];
      if (!entry.isFile || !type || !/^[\w.-]+$/.test(entry.name)) continue;
      const body = await Deno.readFile(new URL(entry.name, dir));
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
      const etag = `"${Array.from(digest.subarray(0, 12), (b) => b.toString(16).padStart(2, "0")).join("")}"`;
      assets.set(entry.name === "index.html" ? "/" : `/playground/${entry.name}`, { body, type, etag });
    }
  } catch (e) {
    throw new TypeError(
      `Cannot read the playground in ${where}: ${(e as Error).message} (or start with --no-playground)`,
    );
  }
  if (!assets.has("/")) {
    throw new TypeError(
      `Cannot serve the playground: ${where}index.html is missing (or start with --no-playground)`,
    );
  }
  return { assets };
}

/** The routes serving `page`. */
export function playgroundRoutes(page: Playground): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  for (const [path, asset] of page.assets) app.get(path, (c) => serveAsset(c, asset, path === "/"));
  return app;
}

function serveAsset(c: Context<AppEnv>, asset: Asset, isPage: boolean): Response {
  const headers: Record<string, string> = {
    "Content-Type": asset.type,
    "Cache-Control": "no-cache",
    ETag: asset.etag,
    "X-Content-Type-Options": "nosniff",
  };
  if (isPage) {
    headers["Content-Security-Policy"] = PLAYGROUND_CSP;
    headers["Referrer-Policy"] = "no-referrer";
    headers["X-Frame-Options"] = "DENY";
  }
  const match = c.req.header("if-none-match")?.split(",").some((t) => t.trim() === asset.etag);
  return match ? c.body(null, 304, headers) : c.body(asset.body, 200, headers);
}
