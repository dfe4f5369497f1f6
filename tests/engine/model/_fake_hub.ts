/**
 * Test helper: a local HTTP server that answers like the Hugging Face Hub's `resolve` endpoint
 * (redirect to a CDN on another host, `X-Linked-Etag`/`X-Linked-Size`, `X-Error-Code` on 401, 403 and
 * 404), and the CDN itself (`Range` requests answered 206), with faults to inject: a connection that
 * drops mid-file, a CDN that ignores `Range`, a wrong announced checksum.
 */
import { createHash } from "node:crypto";

/** A file of a repository on the fake Hub. */
export interface FakeFile {
  readonly owner: string;
  readonly repo: string;
  readonly file: string;
  readonly bytes: Uint8Array;
  readonly revision?: string;
  /** The SHA-256 announced in X-Linked-Etag (default: the real one). */
  readonly announce?: string;
  /** Needs `Authorization: Bearer <token>` (401 RepoNotFound without it, as the Hub answers). */
  readonly private?: boolean;
  /** 403 GatedRepo whatever the token. */
  readonly gated?: boolean;
}

/** One request as a server saw it. */
export interface Seen {
  readonly method: string;
  readonly path: string;
  readonly auth: string | null;
  readonly range: string | null;
}

export const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/** The Hub on 127.0.0.1 and its CDN on localhost: different hosts, different ports. */
export class FakeHub {
  readonly token = "hf_fake_token";
  readonly hubSeen: Seen[] = [];
  readonly cdnSeen: Seen[] = [];
  /** The next `drops` CDN responses send `dropAfter` bytes, then the connection is cut. */
  faults = { drops: 0, dropAfter: 0, ignoreRange: false };
  readonly #files: FakeFile[];
  readonly #hub: Deno.HttpServer<Deno.NetAddr>;
  readonly #cdn: Deno.HttpServer<Deno.NetAddr>;

  constructor(files: FakeFile[]) {
    this.#files = files;
    this.#cdn = Deno.serve({ hostname: "localhost", port: 0, onListen: () => {} }, (r) => this.#cdnAnswer(r));
    this.#hub = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (r) => this.#hubAnswer(r));
  }

  /** `HF_ENDPOINT` of the fake Hub. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.#hub.addr.port}`;
  }

  get cdnHost(): string {
    return `localhost:${this.#cdn.addr.port}`;
  }

  async close(): Promise<void> {
    await Promise.all([this.#hub.shutdown(), this.#cdn.shutdown()]);
  }

  #hubAnswer(req: Request): Response {
    const url = new URL(req.url);
    const auth = req.headers.get("authorization");
    this.hubSeen.push({ method: req.method, path: url.pathname, auth, range: req.headers.get("range") });
    const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const err = (status: number, code: string, message: string) =>
      new Response(null, { status, headers: { "X-Error-Code": code, "X-Error-Message": message } });
    if (!m) return err(404, "", "Not found");
    const [owner, repo, rev, file] = [m[1], m[2], decodeURIComponent(m[3]), decodeURIComponent(m[4])];
    const inRepo = this.#files.filter((f) => f.owner === owner && f.repo === repo);
    const authed = auth === `Bearer ${this.token}`;
    if (!inRepo.length || (inRepo[0].private && !authed)) {
      return err(401, "RepoNotFound", "Repository not found");
    }
    if (inRepo[0].gated) {
      return err(
        403,
        "GatedRepo",
        `Access to model ${owner}/${repo} is restricted. You must have access to it.`,
      );
    }
    const atRev = inRepo.filter((f) => (f.revision ?? "main") === rev);
    if (!atRev.length) return err(404, "RevisionNotFound", `Invalid rev id: ${rev}`);
    const f = atRev.find((f) => f.file === file);
    if (!f) return err(404, "EntryNotFound", `${file} does not exist on "${rev}"`);
    const real = sha256(f.bytes);
    return new Response(null, {
      status: 302,
      headers: {
        Location: `http://${this.cdnHost}/blobs/${real}?X-Amz-Signature=abc`,
        "X-Linked-Etag": `"${f.announce ?? real}"`,
        "X-Linked-Size": String(f.bytes.length),
        "X-Repo-Commit": "0123456789abcdef0123456789abcdef01234567",
        ETag: `"${"1".repeat(40)}"`,
      },
    });
  }

  #cdnAnswer(req: Request): Response {
    const url = new URL(req.url);
    const range = req.headers.get("range");
    this.cdnSeen.push({
      method: req.method,
      path: url.pathname,
      auth: req.headers.get("authorization"),
      range,
    });
    const f = this.#files.find((f) => `/blobs/${sha256(f.bytes)}` === url.pathname);
    if (!f) return new Response("no such blob", { status: 404 });
    const start = range && !this.faults.ignoreRange ? Number(/^bytes=(\d+)-$/.exec(range)?.[1] ?? 0) : 0;
    if (start >= f.bytes.length) return new Response(null, { status: 416 });
    const body = f.bytes.subarray(start);
    const headers: Record<string, string> = { "Content-Length": String(body.length) };
    if (start > 0) headers["Content-Range"] = `bytes ${start}-${f.bytes.length - 1}/${f.bytes.length}`;
    const status = start > 0 ? 206 : 200;
    if (this.faults.drops > 0) {
      this.faults.drops--;
      const cut = this.faults.dropAfter;
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(body.slice(0, cut));
        },
        async pull(c) {
          await new Promise((r) => setTimeout(r, 20));
          c.close(); // short of Content-Length: the server cuts the connection
        },
      });
      return new Response(stream, { status, headers });
    }
    return new Response(body.slice(), { status, headers });
  }
}
