import { createPrivateKey, sign } from "node:crypto";
import { generateAppKeyPair } from "../../src/sim/keys.ts";
import { type Simulator, type SimulatorOptions, startSimulator } from "../../src/sim/simulator.ts";

export const keys = generateAppKeyPair();
export const otherKeys = generateAppKeyPair();
export const appId = 100;
export const clientId = "Iv23liTestApp";

export const seed = {
  apps: [
    { id: appId, clientId, slug: "test-app", owner: "acme", publicKeys: [keys.publicKeyPem] },
    {
      id: 200,
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
      account: { login: "acme", type: "Organization" as const },
      permissions: { contents: "write" as const, issues: "read" as const, metadata: "read" as const },
      repositorySelection: "selected" as const,
      repositoryIds: [11, 12],
    },
    {
      id: 2,
      appId,
      account: { login: "octocat", type: "User" as const },
      permissions: { contents: "read" as const },
      repositorySelection: "all" as const,
    },
    {
      id: 3,
      appId: 200,
      account: { login: "other", type: "Organization" as const },
      permissions: { contents: "read" as const },
    },
    {
      id: 4,
      appId,
      account: { login: "frozen", type: "Organization" as const },
      permissions: { contents: "read" as const },
      suspendedAt: "2026-01-01T00:00:00Z",
    },
  ],
  repositories: [
    { id: 11, owner: "acme", name: "app" },
    { id: 12, owner: "acme", name: "lib" },
    { id: 13, owner: "acme", name: "not-selected" },
    { id: 21, owner: "octocat", name: "hello" },
  ],
};

export function startSim(options: SimulatorOptions = {}): Promise<Simulator> {
  return startSimulator({ seed, ...options });
}

/** A JWT with arbitrary header and claims, signed RS256 with `pem` (or not at all). */
export function jwt(
  claims: Record<string, unknown>,
  options: { pem?: string; alg?: string; sign?: boolean } = {},
): string {
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

export function validJwt(
  now = Math.floor(Date.now() / 1000),
  iss: string | number = appId,
  pem?: string,
): string {
  return jwt({ iss, iat: now - 60, exp: now + 540 }, pem ? { pem } : {});
}

export interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

export async function call(
  sim: Simulator,
  method: string,
  path: string,
  options: { auth?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const res = await fetch(`${sim.url}${path}`, {
    method,
    headers: {
      ...(options.auth ? { authorization: options.auth } : {}),
      ...(options.body !== undefined || options.raw !== undefined
        ? { "content-type": "application/json" }
        : {}),
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

export async function mint(
  sim: Simulator,
  installationId: number,
  body?: unknown,
  headers?: Record<string, string>,
) {
  return call(sim, "POST", `/app/installations/${installationId}/access_tokens`, {
    auth: `Bearer ${validJwt()}`,
    ...(body === undefined ? {} : { body }),
    ...(headers ? { headers } : {}),
  });
}
