/**
 * A bounded host-memory cache of prompt KV states, so that a shared system prompt or a
 * conversation survives other requests taking its slot (`--cache-mem`).
 *
 * Token sequences are cut into blocks of `blockTokens` positions; a block is stored once with the KV
 * of its positions (as {@linkcode SlotKv.read} lays it out) and found by its parent block and its
 * own tokens, so it is a node of a prefix tree: two conversations that share a system prompt share
 * its blocks, and a block is only ever found after the exact tokens before it. Only whole blocks are
 * kept (a cached prefix restores up to `blockTokens - 1` positions short of its length).
 *
 * Eviction is least-recently-used by bytes. A lookup or save touches its blocks deepest first, so a
 * parent is always more recent than its children and the leaves of old chains go first; evicting a
 * block evicts its descendants (nothing could reach them).
 *
 * @module
 */

interface Block {
  readonly id: number;
  readonly parent: Block | null;
  readonly key: string;
  /** KV of the block's positions. */
  readonly data: Uint8Array;
  readonly children: Set<Block>;
}

/** Counters of a {@linkcode PromptCache}. */
export interface PromptCacheStats {
  readonly capacityBytes: number;
  readonly bytes: number;
  readonly blocks: number;
  readonly blockTokens: number;
  /** Lookups that restored at least one block, and the positions they found. */
  readonly hits: number;
  readonly hitTokens: number;
  /** Blocks saved and evicted since start. */
  readonly saved: number;
  readonly evicted: number;
}

/** Default positions per block. */
export const CACHE_BLOCK_TOKENS = 16;

/**
 * The cache. `bytesPerToken` is the KV size of one position (all layers, K and V).
 *
 * @example
 * ```ts
 * import { PromptCache } from "./prompt_cache.ts";
 * const cache = new PromptCache(1 << 20, 4, 2); // 1 MiB, 4 bytes a position, blocks of 2
 * cache.save([1, 2, 3, 4, 5], 5, (from, to) => new Uint8Array((to - from) * 4));
 * cache.lookup([1, 2, 3, 9], 4).length; // 1 block: [1, 2]
 * ```
 */
export class PromptCache {
  readonly capacityBytes: number;
  readonly blockTokens: number;
  readonly #blockBytes: number;
  /** Every block by key, least recently used first. */
  readonly #blocks = new Map<string, Block>();
  #nextId = 1;
  #counts = { hits: 0, hitTokens: 0, saved: 0, evicted: 0 };

  constructor(capacityBytes: number, bytesPerToken: number, blockTokens = CACHE_BLOCK_TOKENS) {
    if (!(Number.isInteger(blockTokens) && blockTokens >= 1)) {
      throw new RangeError(`blockTokens must be a positive integer, got ${blockTokens}`);
    }
    if (!(capacityBytes >= 0) || !(bytesPerToken > 0)) {
      throw new RangeError(
        `Invalid prompt cache size: ${capacityBytes} bytes, ${bytesPerToken} bytes a position`,
      );
    }
    this.capacityBytes = capacityBytes;
    this.blockTokens = blockTokens;
    this.#blockBytes = blockTokens * bytesPerToken;
  }

  /** Whether the cache can hold at least one block. */
  get enabled(): boolean {
    return this.capacityBytes >= this.#blockBytes;
  }

  get stats(): PromptCacheStats {
    return {
      capacityBytes: this.capacityBytes,
      bytes: this.#blocks.size * this.#blockBytes,
      blocks: this.#blocks.size,
      blockTokens: this.blockTokens,
      ...this.#counts,
    };
  }

  #key(parent: Block | null, tokens: readonly number[], i: number): string {
    const b = this.blockTokens;
    let key = `${parent?.id ?? 0}`;
    for (let j = i * b; j < (i + 1) * b; j++) key += `,${tokens[j]}`;
    return key;
  }

  /** The chain of blocks `[0, k)` stored for `tokens`, k as large as possible within `limit` tokens. */
  #walk(tokens: readonly number[], limit: number): Block[] {
    const chain: Block[] = [];
    const max = Math.floor(Math.min(limit, tokens.length) / this.blockTokens);
    let parent: Block | null = null;
    for (let i = 0; i < max; i++) {
      const block = this.#blocks.get(this.#key(parent, tokens, i));
      if (!block) break;
      chain.push(block);
      parent = block;
    }
    return chain;
  }

  /** Marks `chain` used, deepest first (so a parent stays more recent than its children). */
  #touch(chain: readonly Block[]): void {
    for (let i = chain.length - 1; i >= 0; i--) {
      this.#blocks.delete(chain[i].key);
      this.#blocks.set(chain[i].key, chain[i]);
    }
  }

  /**
   * The KV of the longest cached prefix of `tokens` no longer than `limit` positions: one entry
   * per block, in order (block `i` holds positions `[i * blockTokens, (i + 1) * blockTokens)`).
   * `have` positions are already in place elsewhere: the stats count a hit only beyond them.
   */
  lookup(tokens: readonly number[], limit: number, have = 0): Uint8Array[] {
    const chain = this.#walk(tokens, limit);
    this.#touch(chain);
    const found = chain.length * this.blockTokens;
    if (found > have) {
      this.#counts.hits++;
      this.#counts.hitTokens += found - have;
    }
    return chain.map((b) => b.data);
  }

  /**
   * Stores the whole blocks of `tokens[0, n)` that are not cached yet; `read(from, to)` gives the
   * KV of positions `[from, to)`. A prefix longer than the capacity keeps only its first blocks.
   * Returns the number of blocks added.
   */
  save(tokens: readonly number[], n: number, read: (from: number, to: number) => Uint8Array): number {
    const b = this.blockTokens;
    const max = Math.min(
      Math.floor(Math.min(n, tokens.length) / b),
      Math.floor(this.capacityBytes / this.#blockBytes),
    );
    const chain = this.#walk(tokens, max * b);
    this.#touch(chain);
    let added = 0;
    for (let i = chain.length; i < max; i++) {
      const parent = chain[i - 1] ?? null;
      this.#makeRoom(chain);
      const data = read(i * b, (i + 1) * b);
      if (data.length !== this.#blockBytes) {
        throw new RangeError(`KV block of ${data.length} bytes, expected ${this.#blockBytes}`);
      }
      const block: Block = {
        id: this.#nextId++,
        parent,
        key: this.#key(parent, tokens, i),
        data,
        children: new Set(),
      };
      parent?.children.add(block);
      this.#blocks.set(block.key, block);
      chain.push(block);
      added++;
    }
    this.#touch(chain);
    this.#counts.saved += added;
    return added;
  }

  /** Evicts least recently used blocks (never one of `keep`) until one more block fits. */
  #makeRoom(keep: readonly Block[]): void {
    const pinned = new Set(keep);
    while ((this.#blocks.size + 1) * this.#blockBytes > this.capacityBytes) {
      let victim: Block | undefined;
      for (const block of this.#blocks.values()) {
        if (!pinned.has(block)) {
          victim = block;
          break;
        }
      }
      if (!victim) return;
      this.#evict(victim);
    }
  }

  #evict(block: Block): void {
    for (const child of block.children) this.#evict(child);
    block.parent?.children.delete(block);
    if (this.#blocks.delete(block.key)) this.#counts.evicted++;
  }

  /** Drops everything. */
  clear(): void {
    this.#blocks.clear();
  }
}
