import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Agent, fetch as undiciFetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestSim, type TestSim } from "./helpers.ts";

const run = promisify(execFile);

let t: TestSim;
let cert: string;
beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "ghat-sim-tls-"));
  // A self-signed serving certificate for 127.0.0.1: its own CA bundle.
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    join(dir, "key.pem"),
    "-out",
    join(dir, "cert.pem"),
    "-days",
    "1",
    "-subj",
    "/CN=github.test",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
  ]);
  cert = readFileSync(join(dir, "cert.pem"), "utf8");
  t = await startTestSim({
    enterprise: true,
    tls: { cert, key: readFileSync(join(dir, "key.pem"), "utf8") },
  });
});
afterAll(() => t?.close());

describe("HTTPS, as Enterprise Server with its own CA", () => {
  it("serves the API to a client that trusts the CA bundle", async () => {
    expect(t.sim.apiUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/api\/v3$/);
    const dispatcher = new Agent({ connect: { ca: cert } });
    try {
      const r = await undiciFetch(`${t.sim.apiUrl}/app/installations/2/access_tokens`, {
        method: "POST",
        headers: { authorization: t.bearer() },
        dispatcher,
      });
      expect(r.status).toBe(201);
      const { token } = (await r.json()) as { token: string };
      expect(t.sim.checkToken(token).live).toBe(true);
    } finally {
      await dispatcher.close();
    }
  });

  it("is refused by a client that does not trust it", async () => {
    await expect(fetch(`${t.sim.apiUrl}/app`)).rejects.toThrow();
  });
});
