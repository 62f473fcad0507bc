import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { readBounded } from "../../../src/kube/rest.ts";

describe("readBounded", () => {
  it("reads an answer within the bound and refuses a larger one, destroying its stream", async () => {
    expect(await readBounded(Readable.from([Buffer.from("ab"), Buffer.from("c")]), "GET x", 3)).toBe("abc");
    const big = Readable.from([Buffer.from("ab"), Buffer.from("cd"), Buffer.from("ef")]);
    await expect(readBounded(big, "GET /api/v1/x", 3)).rejects.toThrow(
      "GET /api/v1/x: the API server's answer is larger than 0 MiB",
    );
    expect(big.destroyed).toBe(true);
  });
});
