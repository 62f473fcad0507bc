import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { kubectl, newNamespace } from "../support/cluster.ts";

const dir = new URL("../../examples/", import.meta.url).pathname;

describe("examples/", () => {
  it.each(readdirSync(dir).filter((f) => f.endsWith(".yaml")))(
    "%s applies cleanly (server-side dry run)",
    async (file) => {
      const ns = await newNamespace("examples");
      const r = await kubectl(["-n", ns, "apply", "--dry-run=server", "-f", `${dir}${file}`]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/(created|configured) \(server dry run\)/);
    },
  );
});
