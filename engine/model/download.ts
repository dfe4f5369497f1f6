/**
 * Downloads one file of a Hugging Face Hub repository into the pull cache the way the Hub's own
 * client (`huggingface_hub`'s `hf_hub_download`) does: a `HEAD` of
 * `{HF_ENDPOINT}/{repo}/resolve/{revision}/{file}` with `HF_TOKEN` as a bearer token, redirects on the
 * same host followed with the token, the expected SHA-256 and size read from the `X-Linked-Etag` /
 * `X-Linked-Size` headers of that response, and the file fetched from where it redirects (the CDN),
 * without the token when that is another host. Bytes go to `FILE.part` in the cache; a dropped
 * connection or a new run resumes it with `Range`; the SHA-256 is checked before the `.part` is
 * renamed to its final name, so the cache never holds a file that did not verify.
 *
 * Only `deno task pull` (scripts/pull.ts) imports this module; the server never downloads.
 *
 * @example
 * ```ts ignore
 * const { path } = await pull({ ref: DEFAULT_PULL, cache: "/home/me/.cache/bitnet-server" });
 * ```
 *
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { dirname } from "node:path";
import {
  checkRange,
  type FileMeta,
  fileMeta,
  getFrom,
  PullError,
  type PullErrorKind,
  statusError,
} from "./_hub_http.ts";
import { cachedPath, DEFAULT_ENDPOINT, type HfRef, hubFileUrl } from "./hub.ts";

export { PullError, type PullErrorKind };
import { formatBytes } from "./memory_plan.ts";

/** How far a download is. */
export interface PullProgress {
  /** Bytes in the `.part` file (including what an earlier run left). */
  readonly done: number;
  /** The file's size, or 0 when the server did not say. */
  readonly total: number;
  /** Bytes per second over the last few seconds of this run. */
  readonly bytesPerSecond: number;
}

/** Options of {@linkcode pull}. */
export interface PullOptions {
  readonly ref: HfRef;
  /** The cache directory (see `cacheDir()` in hub.ts). */
  readonly cache: string;
  /** `HF_ENDPOINT` (default: the public Hub). */
  readonly endpoint?: string;
  /** `HF_TOKEN`: sent as `Authorization: Bearer` to the endpoint's host, never to another. */
  readonly token?: string;
  /** Reconnects after a dropped connection without progress in between (default 5). */
  readonly retries?: number;
  /** First wait before reconnecting, doubled each time up to 30 s (default 1000 ms). */
  readonly retryDelayMs?: number;
  /** A connection that sends nothing for this long counts as dropped (default 30 s). */
  readonly stallMs?: number;
  readonly onProgress?: (p: PullProgress) => void;
  /** Lines worth telling the user (resuming, reconnecting, re-downloading). */
  readonly log?: (line: string) => void;
}

/** What {@linkcode pull} did. */
export interface PullResult {
  /** The verified file in the cache. */
  readonly path: string;
  readonly size: number;
  /** Lower-case hex SHA-256 of the file. */
  readonly sha256: string;
  /** Whether the Hub gave a SHA-256 that the file was checked against (files stored in git, not LFS, have none). */
  readonly verified: boolean;
  /** Bytes fetched by this run (0: the cache already held this exact file). */
  readonly downloaded: number;
  /** Bytes of an earlier `.part` this run continued from. */
  readonly resumedFrom: number;
}

/**
 * Downloads `ref` into the cache, resuming a `.part` left by an earlier run, and returns the verified
 * file. If the cache already holds the file with the Hub's SHA-256, nothing is downloaded. Throws a
 * {@linkcode PullError} whose message names the file and what to do.
 */
export async function pull(options: PullOptions): Promise<PullResult> {
  const { ref, log = () => {} } = options;
  const endpoint = options.endpoint || DEFAULT_ENDPOINT;
  const url = hubFileUrl(ref, endpoint);
  const path = cachedPath(options.cache, ref);
  const part = `${path}.part`;
  let meta: FileMeta;
  try {
    meta = await fileMeta(url, options);
  } catch (e) {
    // Offline with the file already pulled: keep it, as the Hub's client does, and say so.
    if (!(e instanceof PullError && e.kind === "network") || !await isFile(path)) throw e;
    log(`${(e as Error).message}\nKeeping the cached ${path}, not checked against the Hub.`);
    const { size } = await Deno.stat(path);
    return { path, size, sha256: await hashFile(path, size), verified: false, downloaded: 0, resumedFrom: 0 };
  }
  if (meta.size !== null && await isFile(path)) {
    const { size } = await Deno.stat(path);
    const sha = size === meta.size ? await hashFile(path, size) : null;
    if (sha && (meta.sha256 === null || sha === meta.sha256)) {
      return { path, size, sha256: sha, verified: meta.sha256 !== null, downloaded: 0, resumedFrom: 0 };
    }
    log(`${path} differs from the Hub's ${ref.file} at ${ref.revision}: downloading it again`);
  }
  try {
    await Deno.mkdir(dirname(path), { recursive: true });
  } catch (e) {
    throw fileError(e, dirname(path), "create the cache directory");
  }
  let result = await download(meta, part, options);
  if (meta.sha256 !== null && result.sha256 !== meta.sha256 && result.resumedFrom > 0) {
    // The .part may hold bytes of an older version of the file: start over once.
    log(`the resumed ${part} does not verify: downloading it again from the start`);
    await Deno.remove(part);
    result = await download(meta, part, options);
  }
  if (meta.sha256 !== null && result.sha256 !== meta.sha256) {
    await Deno.remove(part).catch(() => {});
    throw new PullError(
      "checksum",
      `Checksum mismatch for ${ref.file}: the Hub says SHA-256 ${meta.sha256}, the download is ${result.sha256}. ` +
        `The partial file was deleted; run the same command again. If it fails again, something between you ` +
        `and ${new URL(meta.location).host} is altering the file.`,
    );
  }
  try {
    await Deno.rename(part, path);
  } catch (e) {
    throw fileError(e, path, "move the download into place");
  }
  return { ...result, path, verified: meta.sha256 !== null };
}

/** Fetches into `part` from where it stops, reconnecting on drops; returns the part's digest. */
async function download(
  meta: FileMeta,
  part: string,
  options: PullOptions,
): Promise<Omit<PullResult, "path" | "verified">> {
  const { log = () => {}, onProgress } = options;
  const retries = options.retries ?? 5, stallMs = options.stallMs ?? 30_000;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(part, { read: true, write: true, create: true });
    await file.lock(true); // another pull of the same file waits here
  } catch (e) {
    throw fileError(e, part, "open");
  }
  try {
    const total = meta.size ?? 0;
    let offset = (await file.stat()).size;
    if (total && offset > total) offset = await restart(file, "is longer than the file", log, part);
    let hash = createHash("sha256");
    if (offset > 0) {
      await hashInto(hash, file, offset);
      log(`resuming ${part} at ${formatBytes(offset)} of ${total ? formatBytes(total) : "?"}`);
    }
    let resumedFrom = offset;
    const speed = new Speed();
    let failures = 0, location = meta.location, sameHost = meta.sameHost;
    while (!total || offset < total) {
      const stall = new AbortController();
      let timer = setTimeout(() => stall.abort(), stallMs);
      const before = offset;
      try {
        const res = await getFrom(
          location,
          offset,
          sameHost ? options.token : undefined,
          options,
          stall.signal,
        );
        if (res.status === 416 && total && offset === total) break;
        if (res.status === 401 || res.status === 403) {
          // A signed CDN address may have expired between reconnects: ask the Hub again.
          await res.body?.cancel();
          if (failures++ >= retries) throw statusError(res, options.ref, location);
          ({ location, sameHost } = await fileMeta(hubFileUrl(options.ref, options.endpoint), options));
          continue;
        }
        if (res.status !== 200 && res.status !== 206) {
          await res.body?.cancel();
          throw statusError(res, options.ref, location);
        }
        if (res.status === 206) checkRange(res, offset, total, location);
        else if (offset > 0) {
          // The server ignored Range and sends the whole file: take it from the start.
          offset = resumedFrom = await restart(
            file,
            "cannot be resumed (the server ignored Range)",
            log,
            part,
          );
          hash = createHash("sha256");
        }
        const reader = res.body!.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          clearTimeout(timer);
          timer = setTimeout(() => stall.abort(), stallMs);
          await writeAll(file, value, part, offset, total);
          hash.update(value);
          offset += value.length;
          speed.add(value.length);
          onProgress?.({ done: offset, total, bytesPerSecond: speed.rate() });
        }
        if (!total) break;
        if (offset < total) throw new Error("the connection closed early");
      } catch (e) {
        if (e instanceof PullError && e.kind !== "network") throw e;
        if (offset > before) failures = 0;
        const why = stall.signal.aborted ? `nothing received for ${stallMs / 1000} s` : (e as Error).message;
        if (failures++ >= retries) {
          throw new PullError(
            "network",
            `The download stopped at ${formatBytes(offset)} of ${formatBytes(total)} after ${retries} ` +
              `reconnects (${why}). ${part} keeps what arrived: run the same command again to resume.`,
          );
        }
        const wait = Math.min(30_000, (options.retryDelayMs ?? 1000) * 2 ** (failures - 1));
        log(`connection lost at ${formatBytes(offset)} (${why}): resuming in ${wait / 1000} s`);
        await new Promise((r) => setTimeout(r, wait));
      } finally {
        clearTimeout(timer);
      }
    }
    if (total && offset !== total) {
      throw new PullError("size", `${part} has ${offset} bytes, the Hub says ${total}`);
    }
    await file.syncData();
    return { size: offset, sha256: hash.digest("hex"), downloaded: offset - resumedFrom, resumedFrom };
  } finally {
    file.close();
  }
}

async function writeAll(file: Deno.FsFile, data: Uint8Array, part: string, offset: number, total: number) {
  try {
    for (let n = 0; n < data.length;) n += await file.write(data.subarray(n));
  } catch (e) {
    if ((e as { code?: string }).code === "ENOSPC") {
      throw new PullError(
        "disk_full",
        `The disk is full: ${part} holds ${formatBytes(offset)}${
          total ? ` of ${formatBytes(total)} (${formatBytes(total - offset)} more needed)` : ""
        }. Free some space (or set BN_CACHE to another disk) and run the same command again to resume.`,
      );
    }
    throw fileError(e, part, "write");
  }
}

async function restart(file: Deno.FsFile, why: string, log: (l: string) => void, part: string) {
  log(`${part} ${why}: starting it again from zero`);
  await file.truncate(0);
  await file.seek(0, Deno.SeekMode.Start);
  return 0;
}

/** Feeds the first `n` bytes of `file` to `hash` and leaves the file positioned at `n`. */
async function hashInto(hash: Hash, file: Deno.FsFile, n: number): Promise<void> {
  await file.seek(0, Deno.SeekMode.Start);
  const buf = new Uint8Array(1 << 20);
  for (let left = n; left > 0;) {
    const got = await file.read(buf.subarray(0, Math.min(buf.length, left)));
    if (got === null) throw new Error(`the file ended ${left} bytes early`);
    hash.update(buf.subarray(0, got));
    left -= got;
  }
  await file.seek(n, Deno.SeekMode.Start);
}

async function hashFile(path: string, size: number): Promise<string> {
  using file = await Deno.open(path, { read: true });
  const hash = createHash("sha256");
  await hashInto(hash, file, size);
  return hash.digest("hex");
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

function fileError(e: unknown, path: string, what: string): PullError {
  if (e instanceof PullError) return e;
  if ((e as { code?: string }).code === "ENOSPC") {
    return new PullError(
      "disk_full",
      `The disk is full: cannot ${what} ${path}. Free some space and run again.`,
    );
  }
  return new PullError("file", `Cannot ${what} ${path}: ${(e as Error).message}`);
}

/** Bytes per second over a sliding window of about five seconds. */
class Speed {
  readonly #samples: [number, number][] = [];
  add(bytes: number): void {
    const now = performance.now();
    this.#samples.push([now, bytes]);
    while (this.#samples.length > 2 && now - this.#samples[0][0] > 5000) this.#samples.shift();
  }
  rate(): number {
    const s = this.#samples;
    if (s.length < 2) return 0;
    const ms = s[s.length - 1][0] - s[0][0];
    const bytes = s.slice(1).reduce((a, [, b]) => a + b, 0);
    return ms > 0 ? (bytes * 1000) / ms : 0;
  }
}
