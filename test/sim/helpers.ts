import { createPrivateKey, sign } from "node:crypto";
import { generateAppKeyPair } from "../../src/sim/keys.ts";
import type { SimSeed } from "../../src/sim/seed.ts";
import { type Simulator, type SimulatorOptions, startSimulator } from "../../src/sim/simulator.ts";
import { FakeClock } from "../unit/fakeclock.ts";

export const keys = generateAppKeyPair();
export const otherKeys = generateAppKeyPair();
export const appId = 100;
export const otherAppId = 200;
export const clientId = "Iv23liTestApp";

/**
 * App 100 is installed on org acme (id 1: selected repositories 11 and 12), user octocat
 * (id 2: all) and org frozen (id 4: suspended); App 200 on org other (id 3).
 */
export function testSeed(): SimSeed {
  return {
    apps: [
      { id: appId, clientId, slug: "test-app", owner: "acme", publicKeys: [keys.publicKeyPem] },
      {
        id: otherAppId,
        clientId: "Iv23liOther",
        slug: "other-app",
        owner: "other",
        publicKeys: [otherKeys.publicKeyPem],
      },
    ],
    installations: [
      {
        id: 1,
        appId,
        account: { login: "acme", type: "Organization" },
        permissions: { contents: "write", issues: "read", metadata: "read", repository_projects: "admin" },
        repositorySelection: "selected",
        repositoryIds: [11, 12],
      },
      {
        id: 2,
        appId,
        account: { login: "octocat", type: "User" },
        permissions: { contents: "read", metadata: "read" },
        repositorySelection: "all",
      },
      {
        id: 3,
        appId: otherAppId,
        account: { login: "other", type: "Organization" },
        permissions: { contents: "read" },
      },
      {
        id: 4,
        appId,
        account: { login: "frozen", type: "Organization" },
        permissions: { contents: "read" },
        suspendedAt: "2026-01-01T00:00:00Z",
      },
    ],
    repositories: [
      { id: 11, owner: "acme", name: "app" },
      { id: 12, owner: "acme", name: "lib" },
      { id: 13, owner: "acme", name: "not-selected" },
      { id: 21, owner: "octocat", name: "hello", private: false },
      { id: 31, owner: "other", name: "thing" },
    ],
  };
}

export interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

export interface CallOptions {
  auth?: string;
  body?: unknown;
  raw?: string;
  headers?: Record<string, string>;
}

/** A simulator on a fake clock, with helpers that sign JWTs on that clock. */
export interface TestSim {
  sim: Simulator;
  clock: FakeClock;
  /** Seconds on the fake clock (not the simulator's offset one: that is the client's view). */
  nowS(): number;
  /** `Bearer <JWT>` for App 100 as auth-app makes them (iat now - 60, exp now + 540), or with these claims. */
  bearer(claims?: Record<string, unknown>, options?: JwtOptions): string;
  call(method: string, path: string, options?: CallOptions): Promise<Answer>;
  mint(installationId: number, body?: unknown, headers?: Record<string, string>): Promise<Answer>;
  /** Mints and returns the token, failing the test when minting fails. */
  token(installationId: number, body?: unknown, headers?: Record<string, string>): Promise<string>;
  close(): Promise<void>;
}

export async function startTestSim(options: SimulatorOptions & { start?: number } = {}): Promise<TestSim> {
  const { start, ...rest } = options;
  const clock = new FakeClock(start);
  const sim = await startSimulator({ seed: testSeed(), clock, ...rest });
  const nowS = () => Math.floor(clock.now() / 1000);
  const t: TestSim = {
    sim,
    clock,
    nowS,
    bearer: (claims, jwtOptions) =>
      `Bearer ${jwt(claims ?? { iss: appId, iat: nowS() - 60, exp: nowS() + 540 }, jwtOptions)}`,
    call: (method, path, callOptions) => call(sim.url, method, path, callOptions),
    mint: (installationId, body, headers) =>
      call(sim.url, "POST", `/app/installations/${installationId}/access_tokens`, {
        auth: t.bearer(),
        ...(body === undefined ? {} : { body }),
        ...(headers ? { headers } : {}),
      }),
    token: async (installationId, body, headers) => {
      const r = await t.mint(installationId, body, headers);
      if (r.status !== 201) throw new Error(`mint answered ${r.status}: ${JSON.stringify(r.body)}`);
      return (r.body as { token: string }).token;
    },
    close: () => sim.close(),
  };
  return t;
}

export interface JwtOptions {
  /** PEM private key (default: App 100's). */
  pem?: string;
  alg?: string;
  /** false: no signature at all. */
  sign?: boolean;
}

/** A JWT with any header and claims, signed RS256 with `pem` (or not at all). */
export function jwt(claims: Record<string, unknown>, options: JwtOptions = {}): string {
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = `${enc({ alg: options.alg ?? "RS256", typ: "JWT" })}.${enc(claims)}`;
  if (options.sign === false) return `${head}.`;
  const signature = sign(
    "RSA-SHA256",
    Buffer.from(head),
    createPrivateKey(options.pem ?? keys.privateKeyPkcs1Pem),
  ).toString("base64url");
  return `${head}.${signature}`;
}

export async function call(
  baseUrl: string,
  method: string,
  path: string,
  options: CallOptions = {},
): Promise<Answer> {
  const hasBody = options.body !== undefined || options.raw !== undefined;
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    redirect: "manual",
    headers: {
      ...(options.auth ? { authorization: options.auth } : {}),
      ...(hasBody ? { "content-type": "application/json" } : {}),
      ...options.headers,
    },
    ...(options.raw !== undefined
      ? { body: options.raw }
      : options.body !== undefined
        ? { body: JSON.stringify(options.body) }
        : {}),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as unknown) : undefined };
}

export function messageOf(answer: Answer): string {
  return (answer.body as { message?: string } | undefined)?.message ?? "";
}
