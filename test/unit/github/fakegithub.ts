import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { compactVerify } from "jose";

/**
 * A few canned GitHub answers on a real `node:http(s)` server: enough to test the client's
 * wire behaviour (headers, bodies, status handling, pagination, timeouts). Not a simulator:
 * each test says what GitHub answers.
 */

export interface SeenRequest {
  method: string;
  /** Path with query, as received. */
  url: string;
  pathname: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  /** An object is sent as JSON; a string as is. */
  body?: unknown;
}

/** "hang": never answer; "reset": drop the connection. */
export type Handler = (req: SeenRequest) => Reply | "hang" | "reset" | Promise<Reply | "hang" | "reset">;

export interface FakeGitHub {
  /** `http(s)://127.0.0.1:<port>` */
  url: string;
  requests: SeenRequest[];
  /** Answers `method pathname`; the latest registration wins. */
  on(method: string, pathname: string | RegExp, handler: Handler | Reply): void;
  /** Forgets routes and recorded requests. */
  reset(): void;
  close(): Promise<void>;
}

/** GitHub's error body. */
export function githubError(status: number, message: string, headers: Record<string, string> = {}): Reply {
  return {
    status,
    headers,
    body: { message, documentation_url: "https://docs.github.com/rest", status: String(status) },
  };
}

export async function startFakeGitHub(tls?: { cert: string; key: string }): Promise<FakeGitHub> {
  let routes: { method: string; pathname: string | RegExp; handler: Handler }[] = [];
  const requests: SeenRequest[] = [];
  const server: Server = tls ? createHttpsServer(tls) : createHttpServer();
  server.on("request", (req, res) => {
    // Only the Date headers a test sets: the clock-skew tests need to control them.
    res.sendDate = false;
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = req.url ?? "/";
      const seen: SeenRequest = {
        method: req.method ?? "GET",
        url,
        pathname: new URL(url, "http://x").pathname,
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      };
      requests.push(seen);
      const route = routes.findLast(
        (r) =>
          r.method === seen.method &&
          (typeof r.pathname === "string" ? r.pathname === seen.pathname : r.pathname.test(seen.pathname)),
      );
      const handler: Handler = route?.handler ?? (() => githubError(404, "Not Found"));
      void Promise.resolve(handler(seen)).then((reply) => {
        if (reply === "hang") return;
        if (reply === "reset") {
          req.socket.destroy();
          return;
        }
        const json = reply.body !== undefined && typeof reply.body !== "string";
        res.writeHead(reply.status, {
          ...(json ? { "content-type": "application/json; charset=utf-8" } : {}),
          ...reply.headers,
        });
        res.end(json ? JSON.stringify(reply.body) : ((reply.body as string | undefined) ?? ""));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${tls ? "https" : "http"}://127.0.0.1:${port}`,
    requests,
    on(method, pathname, handler) {
      routes.push({ method, pathname, handler: typeof handler === "function" ? handler : () => handler });
    },
    reset() {
      routes = [];
      requests.length = 0;
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A 2048-bit App key made at test time (no key file is committed). */
export function testKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync("rsa", { modulusLength: 2048 });
}

/** The Bearer JWT of a request, its signature checked, its header and claims decoded. */
export async function appJwt(
  req: SeenRequest,
  publicKey: KeyObject,
): Promise<{ jwt: string; header: Record<string, unknown>; claims: Record<string, unknown> }> {
  const jwt = String(req.headers.authorization ?? "").replace(/^Bearer /, "");
  const { payload, protectedHeader } = await compactVerify(jwt, publicKey);
  return { jwt, header: { ...protectedHeader }, claims: JSON.parse(new TextDecoder().decode(payload)) };
}

/** An installation as GitHub sends it (only the fields ghat reads, plus a few it ignores). */
export function installationBody(
  id: number,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    id,
    app_id: 12345,
    app_slug: "ghat-test",
    target_type: "Organization",
    account: { login: "acme", id: 1, type: "Organization" },
    repository_selection: "selected",
    permissions: { contents: "write", metadata: "read" },
    events: [],
    suspended_at: null,
    ...overrides,
  };
}
