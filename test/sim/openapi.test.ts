import { readFileSync } from "node:fs";
import { Ajv, type ValidateFunction } from "ajv";
import formats from "ajv-formats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { operationIds } from "../../src/sim/routes.ts";
import { type Answer, appId, startTestSim, type TestSim } from "./helpers.ts";

interface Fixture {
  source: string;
  operations: Record<string, { method: string; path: string; responses: Record<string, unknown> }>;
  components: { schemas: Record<string, unknown> };
}
const fixture = JSON.parse(
  readFileSync(new URL("../fixtures/openapi/github-app-routes.json", import.meta.url), "utf8"),
) as Fixture;

/**
 * OpenAPI 3.0's `nullable: true`: ajv 8 honours the keyword next to a `type`; where GitHub's
 * description puts it beside `anyOf`/`allOf` without a type, it becomes anyOf [schema, null].
 */
function openApiNullable(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(openApiNullable);
  if (!node || typeof node !== "object") return node;
  const { nullable, ...rest } = node as Record<string, unknown>;
  const walked = Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, openApiNullable(v)]));
  if (nullable !== true) return walked;
  if ("type" in walked) return { ...walked, nullable: true };
  return { anyOf: [walked, { type: "null" }] };
}

const ajv = new Ajv({ strict: false, allErrors: true });
formats.default(ajv);
ajv.addSchema({ $id: "github", components: openApiNullable(fixture.components) });
const compiled = new Map<string, ValidateFunction>();
function validator(schema: unknown): ValidateFunction {
  const key = JSON.stringify(schema);
  let v = compiled.get(key);
  if (!v) {
    v = ajv.compile(
      openApiNullable(JSON.parse(key.replaceAll('"#/components/', '"github#/components/'))) as object,
    );
    compiled.set(key, v);
  }
  return v;
}

/**
 * Validates an answer against the schema GitHub's description gives its status. A status
 * GitHub does not document for the operation (401 for a bad JWT, say) must be an error with
 * GitHub's basic-error body.
 */
function validate(op: string, r: Answer): void {
  const operation = fixture.operations[op];
  if (!operation) throw new Error(`no operation ${op} in the fixture`);
  const documented = String(r.status) in operation.responses;
  if (!documented) {
    expect(r.status, `${op} answered an undocumented success ${r.status}`).toBeGreaterThanOrEqual(400);
    expect(r.body).toEqual({
      message: expect.any(String),
      documentation_url: expect.any(String),
      status: String(r.status),
    });
  }
  const schema = documented
    ? operation.responses[String(r.status)]
    : { $ref: "#/components/schemas/basic-error" };
  if (schema === null) {
    expect(r.body, `${op} ${r.status} has no body`).toBeUndefined();
    return;
  }
  const check = validator(schema);
  expect(check(r.body), `${op} ${r.status}: ${ajv.errorsText(check.errors)}`).toBe(true);
}

let t: TestSim;
let ghes: TestSim;
beforeAll(async () => {
  t = await startTestSim({ rateLimit: { limit: 2, windowSeconds: 60 } });
  ghes = await startTestSim({ enterprise: true });
  t.sim.state.renameRepository(21, "hello-world");
});
afterAll(async () => {
  await t.close();
  await ghes.close();
});

describe("the OpenAPI fixture", () => {
  it("covers exactly the nine operations the simulator serves, from the pinned source", () => {
    expect(Object.keys(fixture.operations).sort()).toEqual([...operationIds].sort());
    expect(fixture.source).toBe("@octokit/openapi@23.0.2");
  });
});

describe("every answer matches GitHub's OpenAPI description", () => {
  const jwt = () => ({ auth: t.bearer() });
  const badJwt = () => ({ auth: t.bearer({ iss: appId, iat: t.nowS() + 100, exp: t.nowS() + 500 }) });
  const unknownApp = () => ({ auth: t.bearer({ iss: 4040, iat: t.nowS(), exp: t.nowS() + 500 }) });

  it.each<[string, string, () => { auth?: string }]>([
    ["apps/get-authenticated", "/app", jwt],
    ["apps/get-authenticated", "/app", badJwt],
    ["apps/get-authenticated", "/app", unknownApp],
    ["apps/list-installations", "/app/installations", jwt],
    ["apps/list-installations", "/app/installations?per_page=1&page=2", jwt],
    ["apps/list-installations", "/app/installations", () => ({})],
    ["apps/get-installation", "/app/installations/1", jwt],
    ["apps/get-installation", "/app/installations/4", jwt],
    ["apps/get-installation", "/app/installations/999", jwt],
    ["apps/get-installation", "/app/installations/1", badJwt],
    ["apps/get-org-installation", "/orgs/acme/installation", jwt],
    ["apps/get-org-installation", "/orgs/nobody/installation", jwt],
    ["apps/get-user-installation", "/users/octocat/installation", jwt],
    ["apps/get-user-installation", "/users/nobody/installation", jwt],
    ["apps/get-repo-installation", "/repos/acme/app/installation", jwt],
    ["apps/get-repo-installation", "/repos/octocat/hello/installation", jwt],
    ["apps/get-repo-installation", "/repos/acme/none/installation", jwt],
    ["apps/get-repo-installation", "/repositories/21/installation", jwt],
  ])("%s: GET %s", async (op, path, auth) => {
    validate(op, await t.call("GET", path, auth()));
  });

  it.each<[string, number, unknown, Record<string, string>?]>([
    ["all permissions", 1, undefined],
    [
      "named repositories and permissions",
      1,
      { repositories: ["app", "lib"], permissions: { contents: "read" } },
    ],
    ["repository ids", 2, { repository_ids: [21] }],
    ["the stateless format", 2, undefined, { "x-github-stateless-s2s-token": "enabled" }],
    ["an unknown installation (404)", 99, undefined],
    ["a suspended installation (403)", 4, undefined],
    ["a permission not granted (422)", 1, { permissions: { pull_requests: "write" } }],
    ["a level above the grant (422)", 1, { permissions: { issues: "write" } }],
    ["a repository not covered (422)", 1, { repositories: ["nope"] }],
    ["too many repositories (422)", 2, { repository_ids: Array.from({ length: 501 }, (_, i) => i + 1) }],
    ["a body of the wrong type (400)", 1, { repositories: "app" }],
  ])("apps/create-installation-access-token with %s", async (_case, id, body, headers) => {
    validate("apps/create-installation-access-token", await t.mint(id, body, headers));
  });

  it("apps/create-installation-access-token with a bad JWT (401)", async () => {
    const r = await t.call("POST", "/app/installations/1/access_tokens", {});
    validate("apps/create-installation-access-token", r);
  });

  it("the token routes, through success, a spent rate limit, bad credentials and revocation", async () => {
    const token = await t.token(1, { repositories: ["app"] });
    const auth = { auth: `token ${token}` };
    const list = await t.call("GET", "/installation/repositories", auth);
    validate("apps/list-repos-accessible-to-installation", list);
    expect(list.body).toMatchObject({ total_count: 1, repository_selection: "selected" });
    validate(
      "apps/list-repos-accessible-to-installation",
      await t.call("GET", "/installation/repositories", auth),
    );
    const spent = await t.call("GET", "/installation/repositories", auth);
    expect(spent.status).toBe(403);
    validate("apps/list-repos-accessible-to-installation", spent);
    validate("apps/revoke-installation-access-token", await t.call("DELETE", "/installation/token", auth));
    t.clock.advance(60_000);
    const revoked = await t.call("DELETE", "/installation/token", auth);
    expect(revoked.status).toBe(204);
    validate("apps/revoke-installation-access-token", revoked);
    validate(
      "apps/list-repos-accessible-to-installation",
      await t.call("GET", "/installation/repositories", auth),
    );
    validate("apps/revoke-installation-access-token", await t.call("DELETE", "/installation/token", auth));
  });

  it("injected faults", async () => {
    t.sim.faults.add({ route: "*", fault: { kind: "status", status: 503 }, count: 1 });
    validate("apps/get-authenticated", await t.call("GET", "/app", jwt()));
    t.sim.faults.add({
      route: "*",
      fault: { kind: "secondaryRateLimit", status: 429, retryAfterSeconds: 1 },
      count: 1,
    });
    validate("apps/create-installation-access-token", await t.mint(1));
    t.sim.faults.add({ route: "*", fault: { kind: "primaryRateLimit" }, count: 1 });
    validate("apps/create-installation-access-token", await t.mint(1));
  });

  it("Enterprise Server answers", async () => {
    const auth = { auth: ghes.bearer() };
    validate("apps/get-authenticated", await ghes.call("GET", "/api/v3/app", auth));
    validate("apps/list-installations", await ghes.call("GET", "/api/v3/app/installations", auth));
    validate("apps/create-installation-access-token", await ghes.mint(1, { repositories: ["app"] }));
  });
});
