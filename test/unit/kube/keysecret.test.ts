import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { AppResolver } from "../../../src/controller/apps.ts";
import { GhatError } from "../../../src/core/errors.ts";
import { tokenObject } from "../controller/fakes.ts";

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });

function resolver(
  keyName: string,
  keySecret: (ns: string, name: string) => Promise<Record<string, string> | undefined>,
) {
  const calls: string[] = [];
  const r = new AppResolver({
    operatorNamespace: "ghat-system",
    installationOwner: async () => "acme",
    parseKey: () => privateKey,
    fingerprint: () => "fp",
    source: {
      app: () => ({
        apiVersion: "ghat.dev/v1alpha1",
        kind: "GitHubApp",
        metadata: { name: "app", namespace: "team" },
        spec: {
          appId: 1,
          privateKeySecretRef: { name: keyName, key: "pem" },
          baseUrl: "https://api.github.com",
        },
      }),
      keySecret: (ns, name) => {
        calls.push(`${ns}/${name}`);
        return keySecret(ns, name);
      },
      namespaceLabels: () => ({}),
    },
  });
  return { r, calls };
}

describe("AppResolver and key-Secret watches", () => {
  it("reports a key Secret name that is no object name as InvalidSpec, without asking for a watch", async () => {
    const { r, calls } = resolver("key=1", async () => ({ pem: "x" }));
    const res = await r.resolve(tokenObject());
    expect(res).toMatchObject({
      ok: false,
      code: "InvalidSpec",
      message: expect.stringContaining("privateKeySecretRef.name"),
    });
    expect(calls).toEqual([]);
  });

  it("reports a key watch the server refused as the cache's non-retryable error, readably", async () => {
    const { r } = resolver("app-key", async () => {
      throw new GhatError(
        "PrivateKeyNotFound",
        'Secret "app-key" in namespace "team" cannot be watched: HTTP 400',
      );
    });
    expect(await r.resolve(tokenObject())).toMatchObject({
      ok: false,
      code: "PrivateKeyNotFound",
      message: expect.stringContaining("cannot be watched"),
    });
  });

  it("lets a key watch that did not sync in time fail the reconcile with Timeout, to be retried", async () => {
    const { r } = resolver("app-key", async () => {
      throw new GhatError("Timeout", "cache of Secret team/app-key not synced after 10s");
    });
    await expect(r.resolve(tokenObject())).rejects.toMatchObject({ code: "Timeout", retryable: true });
  });
});
