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
