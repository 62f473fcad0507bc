import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { applyPatch, credentialsMs, KubeApiError, KubeRest, readBounded } from "../../../src/kube/rest.ts";

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

describe("KubeRest over node:http", () => {
  let server: Server;
  let base = "";
  const seen: { method: string; url: string; headers: IncomingHttpHeaders; body: string }[] = [];
  let connections = 0;
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => {
        body += c.toString();
      });
      req.on("end", () => {
        seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
        if (req.url?.startsWith("/silent")) return; // never answers
        if (req.url?.startsWith("/unauthorized")) {
          res.writeHead(401, { "content-type": "application/json" });
          res.end(JSON.stringify({ kind: "Status", message: "Unauthorized", code: 401 }));
          return;
        }
        if (req.url?.startsWith("/missing")) {
          res.writeHead(404, { "content-type": "application/json" });
          res.end(JSON.stringify({ kind: "Status", message: 'secrets "x" not found', code: 404 }));
          return;
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ echoed: body === "" ? null : JSON.parse(body) }));
      });
    });
    server.on("connection", () => {
      connections++;
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const config = (cluster: Record<string, unknown> = {}) => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "c", server: base, skipTLSVerify: true, ...cluster }],
      users: [{ name: "u", token: "sa-token" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    return kc;
  };

  it("sends JSON with the user's credentials over one kept-alive connection, and reads the answer", async () => {
    const rest = KubeRest.for(config());
    const before = connections;
    const answer = await rest.patch(
      "/api/v1/namespaces/a/secrets/s",
      applyPatch,
      { data: { k: "v" } },
      {
        fieldManager: "ghat",
        force: undefined,
      },
    );
    expect(answer).toEqual({ echoed: { data: { k: "v" } } });
    expect(await rest.get("/api/v1/namespaces/a/secrets/s")).toEqual({ echoed: null });
    expect(connections - before).toBe(1);
    const [patch, get] = seen.slice(-2);
    expect(patch).toMatchObject({ method: "PATCH", url: "/api/v1/namespaces/a/secrets/s?fieldManager=ghat" });
    expect(patch?.headers).toMatchObject({
      authorization: "Bearer sa-token",
      "user-agent": "ghat",
      "content-type": applyPatch,
      "content-length": String(Buffer.byteLength(patch?.body ?? "")),
    });
    expect(get?.headers["content-type"]).toBeUndefined();
  });

  it("turns an answer outside 2xx into a KubeApiError with the API server's message", async () => {
    const err = await KubeRest.for(config())
      .get("/missing")
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect(err).toMatchObject({ code: 404, message: 'HTTP 404: secrets "x" not found' });
  });

  it("gives up on a silent API server after the idle time, and on an aborted request at once", async () => {
    const rest = KubeRest.for(config());
    await expect(rest.request("GET", { path: "/silent", idleMs: 100 })).rejects.toThrow(
      "no answer from the API server within",
    );
    const abort = new AbortController();
    const pending = rest.request("GET", { path: "/silent/2", signal: abort.signal, idleMs: 0 });
    await expect.poll(() => seen.some((s) => s.url === "/silent/2")).toBe(true);
    abort.abort(new Error("stopped"));
    await expect(pending).rejects.toThrow("stopped");
  });

  it("applies the credentials once per interval, and again at once after a 401", async () => {
    const kc = config();
    // KubeConfig's own (private) way to apply credentials, counted.
    const applying = kc as unknown as { applyOptions(opts: object): Promise<void> };
    const apply = applying.applyOptions.bind(kc);
    let applied = 0;
    applying.applyOptions = async (opts) => {
      applied++;
      await apply(opts);
    };
    const rest = KubeRest.for(kc);
    await rest.get("/a");
    await rest.get("/b");
    expect(applied).toBe(1);
    await expect(rest.get("/unauthorized")).rejects.toMatchObject({ code: 401 });
    await rest.get("/c");
    expect(applied).toBe(2);
    const now = Date.now();
    const clock = vi.spyOn(Date, "now").mockReturnValue(now + credentialsMs + 1);
    try {
      await rest.get("/d");
      expect(applied).toBe(3);
      // A clock that moved back does not keep them either.
      clock.mockReturnValue(now - credentialsMs - 1);
      await rest.get("/e");
      expect(applied).toBe(4);
    } finally {
      clock.mockRestore();
    }
    expect(seen.at(-1)?.headers.authorization).toBe("Bearer sa-token");
  });

  it("refuses a kubeconfig with a proxy-url, saying so", async () => {
    await expect(KubeRest.for(config({ proxyUrl: "http://proxy:3128" })).get("/x")).rejects.toThrow(
      "names a proxy-url, which ghat does not support",
    );
  });
});
