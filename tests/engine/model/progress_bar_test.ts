/** engine/model/progress_bar.ts: the transfer line deno task pull draws on a terminal. */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { formatDuration, formatTransfer } from "../../../engine/model/progress_bar.ts";

Deno.test("formatTransfer() shows bar, percentage, sizes, speed and ETA", () => {
  const GiB = 1024 ** 3, MiB = 1024 ** 2;
  assertEquals(
    formatTransfer("m.gguf", 0.5 * GiB, 1.1 * GiB, 20 * MiB),
    `m.gguf [##############................]  45% 512.0 MiB / 1.10 GiB 20.0 MiB/s ETA 0:31`,
  );
  assertEquals(
    formatTransfer("m.gguf", 10, 100, 0),
    `m.gguf [###...........................]  10% 10 B / 100 B`,
  );
  assertEquals(
    formatTransfer("m.gguf", 100, 100, 5),
    `m.gguf [##############################] 100% 100 B / 100 B 5 B/s`,
  );
  assertEquals(formatTransfer("m.gguf", 3 * MiB, 0, 1.5 * MiB), "m.gguf 3.0 MiB 1.5 MiB/s");
});

Deno.test("formatDuration() is m:ss below an hour, h:mm:ss above", () => {
  assertEquals([formatDuration(7), formatDuration(754), formatDuration(3723), formatDuration(-1)], [
    "0:07",
    "12:34",
    "1:02:03",
    "0:00",
  ]);
});
