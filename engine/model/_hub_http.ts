/**
 * The HTTP side of a pull (private to download.ts): requests with the Hub client's headers and no
 * automatic redirects, so the token goes to the endpoint's host only; the file's metadata from the
 * first response; the Hub's errors turned into messages that say what to do.
 *
 * @module
 */
import type { HfRef } from "./hub.ts";

/** Why a pull failed; `kind` says which advice the message carries. */
export type PullErrorKind =
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "http"
  | "network"
  | "checksum"
  | "size"
  | "disk_full"
  | "file";

/** A pull that failed, with a message that says what to do. */
export class PullError extends Error {
  override name = "PullError";
  constructor(readonly kind: PullErrorKind, message: string) {
    super(message);
  }
}

/** What the first response says about the file. */
export interface FileMeta {
  /** Where to GET the bytes (the CDN after a redirect to another host). */
  readonly location: string;
  readonly sha256: string | null;
  readonly size: number | null;
  /** Whether `location` is on the endpoint's host (the token may go there). */
  readonly sameHost: boolean;
}

const MAX_REDIRECTS = 10;
const USER_AGENT = "bitnet-server-pull/1 (+https://huggingface.co/docs/huggingface_hub)";

/** What requests need to know: the file (for messages), the endpoint and the token. */
export interface HubRequest {
  readonly ref: HfRef;
  readonly endpoint?: string;
  readonly token?: string;
}

/** `HEAD` the resolve URL, following redirects on the same host (renamed repositories) with the token. */
export async function fileMeta(url: string, options: HubRequest): Promise<FileMeta> {
  const origin = new URL(url).host;
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await request(current, "HEAD", options, options.token);
    const linked = {
      sha256: normalizeEtag(res.headers.get("x-linked-etag") ?? res.headers.get("etag")),
      size: intOrNull(res.headers.get("x-linked-size") ?? res.headers.get("content-length")),
    };
    if (res.status >= 300 && res.status < 400 && res.headers.has("location")) {
      const next = new URL(res.headers.get("location")!, current).href;
      if (new URL(next).host === origin) {
        current = next;
        continue;
      }
      return { location: next, ...linked, sameHost: false };
    }
    if (!res.ok) throw statusError(res, options.ref, current);
    return { location: current, ...linked, sameHost: true };
  }
  throw new PullError("http", `Too many redirects from ${url}`);
}

/** A fetch with the Hub client's headers and no automatic redirects; network failures become PullErrors. */
export async function request(
  url: string,
  method: "HEAD" | "GET",
  options: HubRequest,
  token: string | undefined,
  extra: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<Response> {
  const headers: Record<string, string> = {
    "User-Agent": USER_AGENT,
    "Accept-Encoding": "identity",
    ...extra,
  };
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    const res = await fetch(url, { method, headers, redirect: "manual", signal });
    if (method === "HEAD") await res.body?.cancel();
    return res;
  } catch (e) {
    if (signal?.aborted) throw e;
    const host = new URL(url).host;
    throw new PullError(
      "network",
      `Cannot reach ${host}: ${(e as Error).message}. Check the network connection and any proxy ` +
        `(HTTPS_PROXY)${
          options.endpoint ? `, and HF_ENDPOINT=${options.endpoint}` : ", or set HF_ENDPOINT to a mirror"
        }.`,
    );
  }
}

/** The Hub's error for a status, with the advice that fits (`X-Error-Code` says which 404 it is). */
export function statusError(res: Response, ref: HfRef, url: string): PullError {
  const code = res.headers.get("x-error-code") ?? "";
  const said = res.headers.get("x-error-message");
  const repo = `${ref.owner}/${ref.repo}`;
  const detail = said ? ` (the Hub says: ${said})` : "";
  if (res.status === 401) {
    return new PullError(
      "unauthorized",
      `401 Unauthorized for ${repo}${detail}: the repository does not exist, or it is private or gated. ` +
        `For a private or gated one, set HF_TOKEN to an access token with read access ` +
        `(https://huggingface.co/settings/tokens).`,
    );
  }
  if (res.status === 403) {
    return new PullError(
      "forbidden",
      code === "GatedRepo"
        ? `403 Forbidden: ${repo} is gated${detail}. Accept its conditions on its page with the account ` +
          `HF_TOKEN belongs to, then run the same command again.`
        : `403 Forbidden for ${repo}${detail}: HF_TOKEN does not give access to it.`,
    );
  }
  if (res.status === 404) {
    const what = code === "RevisionNotFound"
      ? `${repo} has no revision "${ref.revision}"`
      : code === "RepoNotFound"
      ? `there is no repository ${repo}`
      : `${repo} has no file "${ref.file}" at revision "${ref.revision}"`;
    return new PullError("not_found", `404 Not Found: ${what}${detail} (${url})`);
  }
  return new PullError("http", `${res.status} ${res.statusText} from ${url}${detail}`);
}

/** A ranged GET, following the CDN's own redirects (never with the token to another host). */
export async function getFrom(
  url: string,
  offset: number,
  token: string | undefined,
  options: HubRequest,
  signal: AbortSignal,
): Promise<Response> {
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const range: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
    const res = await request(current, "GET", options, token, range, signal);
    if (res.status < 300 || res.status >= 400 || !res.headers.has("location")) return res;
    await res.body?.cancel();
    const next = new URL(res.headers.get("location")!, current);
    if (next.host !== new URL(current).host) token = undefined;
    current = next.href;
  }
  throw new PullError("http", `Too many redirects from ${url}`);
}

/** A 206 must start where the part ends and agree on the size. */
export function checkRange(res: Response, offset: number, total: number, url: string): void {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get("content-range") ?? "");
  if (!m || Number(m[1]) !== offset || (total && m[3] !== "*" && Number(m[3]) !== total)) {
    throw new PullError(
      "http",
      `${url} answered the Range request for byte ${offset} with "${res.headers.get("content-range")}"`,
    );
  }
}

/** The Hub's ETags are quoted; weak ones carry `W/`. A SHA-256 is 64 hex digits, else null. */
function normalizeEtag(etag: string | null): string | null {
  const v = etag?.replace(/^W\//, "").replace(/^"|"$/g, "").toLowerCase() ?? "";
  return /^[0-9a-f]{64}$/.test(v) ? v : null;
}

function intOrNull(v: string | null): number | null {
  return v !== null && /^\d+$/.test(v) ? Number(v) : null;
}
