import { describe, expect, it } from "vitest";
import { Metrics } from "../../src/metrics.ts";
import { version } from "../../src/version.ts";

describe("ghat_build_info", () => {
  it("is 1, labelled with the version and revision", async () => {
    const text = await new Metrics({ version: "1.2.3", revision: "abc123" }).registry.metrics();
    expect(text).toContain("# TYPE ghat_build_info gauge");
    expect(text).toMatch(/^ghat_build_info\{version="1\.2\.3",revision="abc123"\} 1$/m);
  });

  it("defaults to package.json's version and GHAT_REVISION", async () => {
    const before = process.env.GHAT_REVISION;
    process.env.GHAT_REVISION = "feedbeef";
    try {
      const text = await new Metrics().registry.metrics();
      expect(text).toContain(`ghat_build_info{version="${version}",revision="feedbeef"} 1`);
    } finally {
      if (before === undefined) delete process.env.GHAT_REVISION;
      else process.env.GHAT_REVISION = before;
    }
  });
});

describe("Node.js and process metrics", () => {
  /** The metric families a registry exposes, from its `# TYPE` lines. */
  const families = async (m: Metrics) =>
    new Set(
      (await m.registry.metrics())
        .split("\n")
        .filter((l) => l.startsWith("# TYPE "))
        .map((l) => l.split(" ")[2] ?? ""),
    );

  it("use the standard unprefixed names that stock Node.js dashboards query", async () => {
    const names = await families(new Metrics({ version: "0", revision: "r" }));
    for (const name of [
      "process_cpu_seconds_total",
      "process_cpu_user_seconds_total",
      "process_resident_memory_bytes",
      "process_start_time_seconds",
      "process_open_fds",
      "nodejs_heap_size_used_bytes",
      "nodejs_heap_size_total_bytes",
      "nodejs_external_memory_bytes",
      "nodejs_eventloop_lag_seconds",
      "nodejs_gc_duration_seconds",
      "nodejs_version_info",
    ]) {
      expect(names, name).toContain(name);
    }
  });

  it("are not prefixed with ghat_, and ghat's own metrics still are", async () => {
    const names = [...(await families(new Metrics({ version: "0", revision: "r" })))];
    expect(names.filter((n) => /^ghat_(process|nodejs)_/.test(n))).toEqual([]);
    expect(names.filter((n) => !/^(ghat|process|nodejs)_/.test(n))).toEqual([]);
    expect(names).toContain("ghat_token_refreshes_total");
  });

  it("can be registered by two Metrics in one process (each has its own registry)", async () => {
    const a = await new Metrics({ version: "0", revision: "a" }).registry.metrics();
    const b = await new Metrics({ version: "0", revision: "b" }).registry.metrics();
    expect(a).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(b).toMatch(/^process_resident_memory_bytes \d+/m);
  });
});
