import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getCACertificates } from "node:tls";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createGitHubClient, type GitHubClient } from "../../../src/github/client.ts";
import { trustedCertificates } from "../../../src/github/transport.ts";
import { FakeClock } from "../fakeclock.ts";
import { type FakeGitHub, installationBody, startFakeGitHub, testKeyPair } from "./fakegithub.ts";
import { caught } from "./helpers.ts";

const app = { appId: 12345, key: testKeyPair().privateKey };
const clock = new FakeClock();

/** A self-signed certificate for 127.0.0.1, made by openssl at test time in a temporary directory. */
function selfSigned(): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), "ghat-tls-"));
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
      ],
      { cwd: dir, stdio: "ignore" },
    );
    return {
      cert: readFileSync(join(dir, "server.crt"), "utf8"),
      key: readFileSync(join(dir, "server.key"), "utf8"),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A minimal HTTP CONNECT proxy that records what it was asked to reach and how it was authenticated. */
async function startProxy(): Promise<{
  url: string;
  connects: { target: string; auth: string }[];
  close(): Promise<void>;
}> {
  const connects: { target: string; auth: string }[] = [];
  const server: Server = createServer((_req, res) => {
    res.writeHead(405).end();
  });
  const tunnels = new Set<{ destroy(): void }>();
  server.on("connect", (req, socket, head) => {
    tunnels.add(socket);
    const target = req.url ?? "";
    connects.push({ target, auth: String(req.headers["proxy-authorization"] ?? "") });
    const [host = "", port = ""] = target.split(":");
    const upstream = connect(Number(port), host, () => {
      tunnels.add(upstream);
      socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on("error", () => socket.destroy());
    socket.on("error", () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    connects,
    close() {
      // Tunnels left the HTTP server's bookkeeping when they were established.
      for (const t of tunnels) t.destroy();
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

let tls: { cert: string; key: string };
let ghes: FakeGitHub;
const clients: GitHubClient[] = [];
const client = (options: { caBundle?: string; proxy?: string } = {}) => {
  const c = createGitHubClient({ baseUrl: `${ghes.url}/api/v3`, clock, ...options });
  clients.push(c);
  return c;
};

beforeAll(async () => {
  tls = selfSigned();
  ghes = await startFakeGitHub(tls);
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await ghes.close();
});
beforeEach(() => {
  ghes.reset();
  ghes.on("GET", "/api/v3/app/installations/3", { status: 200, body: installationBody(3) });
});

describe("Enterprise Server on a private CA", () => {
  it("fails without the CA bundle, saying the certificate is not trusted, and succeeds with it", async () => {
    const without = await caught(client().getInstallation(app, 3));
    expect(without).toMatchObject({ code: "GitHubUnavailable", retryable: true });
    expect(without.message).toContain("not trusted");
    expect(without.message).toContain("CA bundle");
    expect(ghes.requests).toHaveLength(0);

    expect((await client({ caBundle: tls.cert }).getInstallation(app, 3)).id).toBe(3);
    expect(ghes.requests).toHaveLength(1);
  });

  it("adds the bundle to Node's default CAs instead of replacing them", () => {
    const defaults = getCACertificates("default");
    const trusted = trustedCertificates(tls.cert);
    expect(trusted).toHaveLength(defaults.length + 1);
    expect(trusted.slice(0, defaults.length)).toEqual(defaults);
  });

  it.each([
    ["no certificate", "just some text", "holds no PEM certificate"],
    [
      "a broken certificate",
      ["-----BEGIN CERTIFICATE-----", "bm90IGEgY2VydGlmaWNhdGU=", "-----END CERTIFICATE-----"].join("\n"),
      "certificate 1 of the CA bundle",
    ],
  ])("refuses a CA bundle with %s as InvalidSpec", (_case, caBundle, says) => {
    expect(() => client({ caBundle })).toThrow(expect.objectContaining({ code: "InvalidSpec" }));
    expect(() => client({ caBundle })).toThrow(says);
  });
});

describe("Through an HTTPS proxy", () => {
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  beforeAll(async () => {
    proxy = await startProxy();
  });
  afterAll(() => proxy.close());

  it("tunnels to Enterprise Server with CONNECT, authenticating to the proxy and trusting the CA bundle", async () => {
    const withCredentials = proxy.url.replace("http://", "http://robot:s3cret@");
    const installation = await client({ caBundle: tls.cert, proxy: withCredentials }).getInstallation(app, 3);
    expect(installation.id).toBe(3);
    expect(proxy.connects).toEqual([
      {
        target: new URL(ghes.url).host,
        auth: `Basic ${Buffer.from("robot:s3cret").toString("base64")}`,
      },
    ]);
  });

  it("reports an unreachable proxy as GitHubUnavailable without its password", async () => {
    const err = await caught(
      client({ caBundle: tls.cert, proxy: "http://robot:s3cret@127.0.0.1:1" }).getInstallation(app, 3),
    );
    expect(err).toMatchObject({ code: "GitHubUnavailable", retryable: true });
    expect(err.message).not.toContain("s3cret");
  });

  it.each(["ftp://proxy.example:21", "not a url"])("refuses the proxy %s as InvalidSpec", (proxyUrl) => {
    expect(() => client({ proxy: proxyUrl })).toThrow(expect.objectContaining({ code: "InvalidSpec" }));
  });
});
