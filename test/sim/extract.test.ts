import { describe, expect, it } from "vitest";
import { extract } from "../../hack/openapi/extract.ts";
import { operationIds } from "../../src/sim/routes.ts";

/** A tiny description with GitHub's shapes: response refs, nested schema refs, an unrelated schema. */
function description(ops: readonly string[] = operationIds) {
  const paths: Record<string, unknown> = {};
  for (const [i, operationId] of ops.entries()) {
    paths[`/op${i}`] = {
      get: {
        operationId,
        responses: {
          "200": {
            content: { "application/json": { schema: { $ref: "#/components/schemas/installation" } } },
          },
          "404": { $ref: "#/components/responses/not_found" },
          "204": { description: "No Content" },
        },
      },
    };
  }
  paths["/other"] = { get: { operationId: "repos/get", responses: {} } };
  return {
    paths,
    components: {
      responses: {
        not_found: {
          content: { "application/json": { schema: { $ref: "#/components/schemas/basic-error" } } },
        },
      },
      schemas: {
        installation: {
          type: "object",
          properties: { account: { $ref: "#/components/schemas/simple-user" } },
        },
        "simple-user": { type: "object", properties: { login: { type: "string" } } },
        "basic-error": { type: "object", properties: { message: { type: "string" } } },
        unrelated: { type: "string" },
      },
    },
  };
}

describe("the OpenAPI fixture extraction", () => {
  it("keeps the operations' responses and exactly the schemas they reach", () => {
    const fixture = extract(description()) as {
      operations: Record<string, { method: string; responses: Record<string, unknown> }>;
      components: { schemas: Record<string, unknown> };
    };
    expect(Object.keys(fixture.operations)).toEqual([...operationIds]);
    expect(fixture.operations["apps/get-authenticated"]).toEqual({
      method: "GET",
      path: "/op0",
      responses: {
        "200": { $ref: "#/components/schemas/installation" },
        "404": { $ref: "#/components/schemas/basic-error" },
        "204": null,
      },
    });
    expect(Object.keys(fixture.components.schemas)).toEqual(["basic-error", "installation", "simple-user"]);
  });

  it("fails when the description lacks one of the operations", () => {
    expect(() => extract(description(operationIds.slice(1)))).toThrow("no operation apps/get-authenticated");
  });
});
