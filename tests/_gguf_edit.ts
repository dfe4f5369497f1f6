/**
 * Test helper: rewrite a (small) GGUF with edited metadata and tensors, to build broken or unusual
 * files from a synthetic one.
 */
import { openGguf } from "../engine/format/gguf.ts";
import { type GgufTensorSpec, type GgufTypedValue, writeGguf } from "../engine/format/gguf_writer.ts";

export interface EditableTensor {
  name: string;
  type: number;
  dims: number[];
  data: Uint8Array;
}

/** Reads `src`, lets `edit` change tensors, adds or replaces the `extraMeta` keys, writes `out`. */
export function rewriteGguf(
  src: string,
  out: string,
  edit: (tensors: EditableTensor[]) => EditableTensor[],
  extraMeta: [string, GgufTypedValue][] = [],
): string {
  const g = openGguf(src);
  using file = Deno.openSync(src);
  const tensors: EditableTensor[] = g.tensors.map((t) => {
    const data = new Uint8Array(t.nbytes);
    file.seekSync(t.offset, Deno.SeekMode.Start);
    for (let done = 0; done < data.length;) done += file.readSync(data.subarray(done)) ?? 0;
    return { name: t.name, type: t.type, dims: [...t.dims], data };
  });
  const metadata: [string, GgufTypedValue][] = [];
  for (const [key, value] of g.metadata) {
    const type = g.metadataTypes.get(key)!;
    const m = /^array<(\w+)>$/.exec(type);
    metadata.push([key, (m ? { type: "array", elem: m[1], value } : { type, value }) as GgufTypedValue]);
  }
  const specs: GgufTensorSpec[] = edit(tensors).map((t) => ({
    name: t.name,
    type: t.type,
    dims: t.dims,
    data: t.data,
  }));
  const replaced = new Set(extraMeta.map(([key]) => key));
  const kept = metadata.filter(([key]) => !replaced.has(key));
  writeGguf(out, { metadata: [...kept, ...extraMeta], tensors: specs, alignment: g.alignment });
  return out;
}
