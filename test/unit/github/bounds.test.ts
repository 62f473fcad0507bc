import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { type Fetch, maxResponseBytes } from "../../../src/github/client.ts";
import { isInstallationToken } from "../../../src/github/schemas.ts";
import type { AppCredentials } from "../../../src/github/types.ts";
import { githubError, installationBody, testKeyPair } from "./fakegithub.ts";
import { caught, classic, client, github, mintPath, start, tokenBody, useFakeGitHub } from "./helpers.ts";

/**
 * What a hostile or broken server (or whatever answers in GitHub's place) can make ghat
 * hold, follow, store or repeat: bounded, never followed, never stored, never repeated.
 */

const { privateKey } = testKeyPair();
const app: AppCredentials = { appId: 12345, key: privateKey };

useFakeGitHub();
const host = () => new URL(github.url).host;

describe("Answers are read up to 1 MiB, then discarded", () => {
  /** A server whose answer never ends; it writes only as fast as the client reads. */
  async function endlessServer() {
    let written = 0;
    let closed = false;
    const server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.on("close", () => {
        closed = true;
      });
      const chunk = Buffer.alloc(64 * 1024, "a");
      const pump = (r: ServerResponse) => {
        while (!r.destroyed) {
          written += chunk.length;
          if (!r.write(chunk)) {
            r.once("drain", () => pump(r));
            return;
          }
        }
      };
      res.write('{"id":1,"name":"');
      pump(res);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      written: () => written,
      closed: () => closed,
      close: () => {
        server.closeAllConnections();
        return new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }

  it("stops reading an endless answer at the cap, drops the connection, and says so", async () => {
    const endless = await endlessServer();
    try {
      const began = performance.now();
      const err = await caught(client({ baseUrl: endless.url, timeoutMs: 15_000 }).getApp(app));
      expect(err).toMatchObject({ code: "InvalidResponse", retryable: true, status: 200 });
      expect(err.message).toBe(
        `${new URL(endless.url).host} answered more than 1 MiB; the answer was discarded (GET /app)`,
      );
      // Long before the request's timeout, and the server was told to stop.
      expect(performance.now() - began).toBeLessThan(10_000);
      await expect.poll(endless.closed).toBe(true);
      // Bounded: the cap plus what socket buffers held, not what the server could send.
      expect(endless.written()).toBeLessThan(32 * maxResponseBytes);
    } finally {
      await endless.close();
    }
  });

  it("gives up on an answer that stops after its headers, at the request's deadline, and drops it", async () => {
    let closed = false;
    const server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"id":1,"na'); // and nothing more
      res.on("close", () => {
        closed = true;
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const err = await caught(client({ baseUrl: url, timeoutMs: 300 }).getApp(app));
      expect(err).toMatchObject({ code: "GitHubUnavailable", retryable: true });
      expect(err.message).toBe(
        `could not reach GitHub at ${new URL(url).host}: no answer within 300 ms (GET /app)`,
      );
      await expect.poll(() => closed).toBe(true);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("accepts an answer of exactly 1 MiB and refuses one byte more", async () => {
    const answer = (bytes: number) => {
      const prefix = '{"id":7,"name":"';
      const suffix = '"}';
      return `${prefix}${"n".repeat(bytes - prefix.length - suffix.length)}${suffix}`;
    };
    expect(maxResponseBytes).toBe(1024 * 1024);
    github.on("GET", "/app", { status: 200, body: answer(maxResponseBytes) });
    expect((await client().getApp(app)).id).toBe(7);
    github.on("GET", "/app", { status: 200, body: answer(maxResponseBytes + 1) });
    expect((await caught(client().getApp(app))).code).toBe("InvalidResponse");
  });

  it("refuses an error answer over the cap the same way, quoting none of it", async () => {
    github.on("GET", "/app", { status: 500, body: `{"message":"${"x".repeat(maxResponseBytes)}"}` });
    const err = await caught(client().getApp(app));
    expect(err).toMatchObject({ code: "InvalidResponse", status: 500 });
    expect(err.message).not.toContain("xxxx");
  });

  it("still reads fakes that offer only text(), with the same cap", async () => {
    const textOnly =
      (text: string): Fetch =>
      async () => ({ status: 200, headers: new Headers(), text: async () => text });
    expect((await client({ fetch: textOnly('{"id":3,"name":"x"}') }).getApp(app)).id).toBe(3);
    const err = await caught(client({ fetch: textOnly("y".repeat(maxResponseBytes + 1)) }).getApp(app));
    expect(err.code).toBe("InvalidResponse");
  });
});

describe("Redirects are answers, never followed", () => {
  it("refuses a moved repository's installation lookup (301) without asking its new location", async () => {
    const location = `${github.url}/repositories/99/installation`;
    github.on("GET", "/repos/acme/legacy-tool/installation", {
      ...githubError(301, "Moved Permanently", { location }),
    });
    github.on("GET", "/repositories/99/installation", { status: 200, body: installationBody(99) });
    const err = await caught(client().findInstallationByRepository(app, "acme/legacy-tool"));
    expect(err).toMatchObject({ code: "InstallationNotFound", status: 301, retryable: false });
    expect(err.message).toContain(
      "repository acme/legacy-tool has moved (GitHub answered 301); name its new owner/repository",
    );
    expect(github.requests.map((r) => r.url)).toEqual(["/repos/acme/legacy-tool/installation"]);
  });

  it.each([301, 302, 303, 307, 308])(
    "refuses a %i to another host as InvalidResponse, naming neither the host nor the path",
    async (status) => {
      github.on("POST", mintPath(1), {
        status,
        headers: { location: "http://10.0.0.5:8080/internal/admin?x=1" },
      });
      const err = await caught(client().mintToken(app, 1));
      expect(err).toMatchObject({ code: "InvalidResponse", status, retryable: true });
      expect(err.message).toBe(
        `${host()} answered a redirect (${status}) to another location; ghat does not follow redirects (POST ${mintPath(1)})`,
      );
      expect(github.requests).toHaveLength(1);
    },
  );

  it("names a redirect's target only when it stays on the API's origin", async () => {
    github.on("GET", "/app", { status: 302, headers: { location: "/api/v3/app" } });
    const err = await caught(client().getApp(app));
    expect(err.message).toContain("answered a redirect (302) to /api/v3/app; ghat does not follow redirects");
  });

  it("does not send a token to be revoked anywhere a redirect points", async () => {
    github.on("DELETE", "/installation/token", {
      status: 307,
      headers: { location: `${github.url}/elsewhere/token` },
    });
    github.on("DELETE", "/elsewhere/token", { status: 204 });
    const err = await caught(client().revokeToken(classic));
    expect(err.code).toBe("InvalidResponse");
    expect(github.requests.map((r) => r.url)).toEqual(["/installation/token"]);
  });
});

describe("Bodies that are not GitHub's JSON are not repeated", () => {
  it("says HTTP <status> from <host> without quoting a proxy's page", async () => {
    github.on("POST", mintPath(1), {
      status: 502,
      body: "upstream db.internal.corp:5432 refused\r\nX-Injected: yes",
    });
    const err = await caught(client().mintToken(app, 1));
    expect(err).toMatchObject({ code: "GitHubUnavailable", status: 502 });
    expect(err.message).toContain(`HTTP 502 from ${host()} (not a GitHub API answer)`);
    expect(err.message).not.toMatch(/internal|Injected/);
  });

  it("quotes GitHub's JSON message on one line, at most 200 characters", async () => {
    const message = `Server Error\nX-Injected: yes\u0007${"z".repeat(500)}`;
    github.on("POST", mintPath(1), githubError(500, message));
    const err = await caught(client().mintToken(app, 1));
    expect(err.message).toContain('"Server Error X-Injected: yes z');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting their absence
    expect(err.message).not.toMatch(/[\u0000-\u001f\u007f]/);
    expect(err.message).not.toContain("z".repeat(200));
  });
});

describe("A minted token must have GitHub's token grammar", () => {
  const stateless = `ghs_12345_eyJhbGciOiJSUzI1NiJ9.${"a".repeat(400)}.${"b_c-d".repeat(20)}`;

  it.each([
    ["the classic format", classic],
    ["the stateless format", stateless],
    ["the longest accepted", `ghs_${"a".repeat(4096)}`],
  ])("accepts %s", async (_case, token) => {
    expect(isInstallationToken(token)).toBe(true);
    github.on("POST", mintPath(1), { status: 201, body: tokenBody({ token }) });
    expect((await client().mintToken(app, 1)).token).toBe(token);
  });

  it.each([
    ["a newline", `${classic}\nX-Injected: yes`],
    ["a space", `${classic} tail`],
    ["an equals sign", `${classic}=`],
    ["too long", `ghs_${"a".repeat(4097)}`],
    ["too short", "ghs_abcdefghij0123456789"],
    ["another prefix", `gho_${classic.slice(4)}`],
  ])("discards a token with %s, never repeating it", async (_case, token) => {
    expect(isInstallationToken(token)).toBe(false);
    github.on("POST", mintPath(1), { status: 201, body: tokenBody({ token }) });
    const err = await caught(client().mintToken(app, 1));
    expect(err).toMatchObject({ code: "InvalidResponse", retryable: true });
    expect(err.message).toBe(
      `GitHub answered a token that does not match GitHub's token format; it was discarded (POST ${mintPath(1)})`,
    );
  });
});

describe("A minted token's expires_at must fall 1 minute to 24 hours after GitHub's Date", () => {
  const date = (ms: number) => ({ date: new Date(ms).toUTCString() });

  it.each([
    ["in the past", "2026-11-24T11:00:00Z", date(start)],
    ["2 seconds ahead", "2026-11-24T12:00:02Z", date(start)],
    ["in the year 9999", "9999-12-31T23:59:59Z", date(start)],
    ["25 hours ahead", "2026-11-25T13:00:00Z", date(start)],
    ["2 seconds after this machine's clock, without a Date header", "2026-11-24T12:00:02Z", {}],
  ])("refuses one %s", async (_case, expiresAt, headers) => {
    github.on("POST", mintPath(1), { status: 201, headers, body: tokenBody({ expires_at: expiresAt }) });
    const err = await caught(client().mintToken(app, 1));
    expect(err).toMatchObject({ code: "InvalidResponse", retryable: true });
    expect(err.message).toContain(`GitHub answered expires_at ${expiresAt}, outside 1m–24h after`);
    expect(err.message).not.toContain("ghs_");
  });

  it("measures from GitHub's Date, not this machine's clock", async () => {
    // GitHub's clock is two hours ahead: its one-hour token is fine (and moved onto ours).
    const githubNow = start + 2 * 3_600_000;
    github.on("POST", mintPath(1), {
      status: 201,
      headers: date(githubNow),
      body: tokenBody({ expires_at: new Date(githubNow + 3_600_000).toISOString() }),
    });
    const minted = await client().mintToken(app, 1);
    expect(minted.expiresAt).toBeLessThanOrEqual(start + 3_600_000);
  });
});

describe("What is copied from an answer is bounded", () => {
  const permissions = (n: number) =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, "read"]));
  const repositories = (n: number, fullName = (i: number) => `acme/r${i}`) =>
    Array.from({ length: n }, (_, i) => ({ id: i + 1, name: `r${i}`, full_name: fullName(i) }));

  it("accepts the largest answers within the bounds", async () => {
    github.on("POST", mintPath(1), {
      status: 201,
      body: tokenBody({
        permissions: permissions(100),
        repositories: repositories(500, (i) => `acme/${"r".repeat(192)}${String(i).padStart(3, "0")}`),
      }),
    });
    const minted = await client().mintToken(app, 1, { repositories: ["r0"] });
    expect(Object.keys(minted.permissions)).toHaveLength(100);
    expect(minted.repositories).toHaveLength(500);
  });

  it.each<[string, Record<string, unknown>]>([
    ["101 permissions", { permissions: permissions(101) }],
    ["a permission name GitHub does not use", { permissions: { "Contents-X": "read" } }],
    ["a permission name of 65 characters", { permissions: { [`p${"a".repeat(64)}`]: "read" } }],
    ["a permission level GitHub does not use", { permissions: { contents: "owner" } }],
    ["501 repositories", { repositories: repositories(501) }],
    ["a full_name over 200 characters", { repositories: repositories(1, () => `acme/${"r".repeat(196)}`) }],
  ])("refuses a mint answer with %s as InvalidResponse", async (_case, overrides) => {
    github.on("POST", mintPath(1), { status: 201, body: tokenBody(overrides) });
    const err = await caught(client().mintToken(app, 1));
    expect(err).toMatchObject({ code: "InvalidResponse", retryable: true });
    expect(err.message).toContain(`POST ${mintPath(1)}`);
    expect(err.message).not.toContain("ghs_");
  });

  it.each<[string, Record<string, unknown>]>([
    ["an account login over 100 characters", { account: { login: "a".repeat(101), type: "User" } }],
    ["an enterprise slug over 100 characters", { account: { slug: "e".repeat(101) } }],
    ["101 permissions", { permissions: permissions(101) }],
    ["a permission level GitHub does not use", { permissions: { contents: "everything" } }],
  ])("refuses an installation with %s as InvalidResponse", async (_case, overrides) => {
    github.on("GET", "/app/installations/5", { status: 200, body: installationBody(5, overrides) });
    const err = await caught(client().getInstallation(app, 5));
    expect(err).toMatchObject({ code: "InvalidResponse", retryable: true });
    expect(err.message).toContain("GET /app/installations/5");
  });

  it("keeps a key from the answer on one line in the message", async () => {
    github.on("GET", "/app/installations/5", {
      status: 200,
      body: installationBody(5, { permissions: { "bad\nX-Injected: yes": "read" } }),
    });
    const err = await caught(client().getInstallation(app, 5));
    expect(err.code).toBe("InvalidResponse");
    // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting their absence
    expect(err.message).not.toMatch(/[\u0000-\u001f\u007f]/);
  });
});

describe("The shortest accepted token lifetime is an option, for simulators", () => {
  it("accepts a 12-second token when the floor is lowered to 10 seconds, and still refuses 2 seconds", async () => {
    const date = { date: new Date(start).toUTCString() };
    github.on("POST", mintPath(1), {
      status: 201,
      headers: date,
      body: tokenBody({ expires_at: "2026-11-24T12:00:12Z" }),
    });
    const c = client({ minTokenLifetimeMs: 10_000 });
    expect((await c.mintToken(app, 1)).expiresAt).toBe(Date.parse("2026-11-24T12:00:12Z"));
    expect((await caught(client().mintToken(app, 1))).message).toContain(
      "outside 1m–24h after its Date header",
    );
    github.on("POST", mintPath(1), {
      status: 201,
      headers: date,
      body: tokenBody({ expires_at: "2026-11-24T12:00:02Z" }),
    });
    const err = await caught(c.mintToken(app, 1));
    expect(err.message).toContain(
      "GitHub answered expires_at 2026-11-24T12:00:02Z, outside 10s–24h after its Date header",
    );
  });
});
