import { createHash } from "node:crypto";
import { type KubernetesObject, type V1Secret, Watch } from "@kubernetes/client-node";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { group, version } from "../../src/api/meta.ts";
import { errorCodes } from "../../src/core/errors.ts";
import { type KubectlResult, kubectl, newNamespace } from "../support/cluster.ts";
import {
  type Case,
  damagedKey,
  type Edit,
  type Expectation,
  edits,
  firstProblem,
  hostileApp,
  hostilePolicy,
  hostileToken,
  type KeyShape,
  malformedKeys,
  rendered,
  type Segment,
  source,
  template,
} from "./arbitraries.ts";
import { useOperator, writeLocal } from "./fixture.ts";
import { allLogs, describeReady, ready, settleReady, type TokenObject, tokenYaml } from "./operator.ts";

/**
 * Issue #8, hostile input. Generated GitHubAppToken, GitHubApp and ClusterGitHubApp specs,
 * private keys, templates and hand edits of managed Secrets go through the real API server
 * with `kubectl apply`, as a user would send them. Each one is either refused with a message
 * naming the field, or reconciled by the running operator to a clear Ready condition. Through
 * it all the operator keeps working, does not loop, and never shows a token or a key.
 */
describe("hostile input", () => {
  const runLabel = `hostile-${process.pid}`;
  const fx = useOperator({
    operatorNamespace: true,
    // Slow retries (GitHub-side terminal errors) come after the whole file has run: the
    // quiet window must not meet the retries of the first cases' failing tokens.
    operator: ["--terminal-retry", "10m"],
    afterStop: () =>
      kubectl(["delete", "clustergithubapps", "-l", `hostile.test/run=${runLabel}`, "--wait=false"]),
  });
  const { kube } = fx;
  /** Namespace with GitHubApp "app" and a foreign Secret "foreign". */
  let ns: string;
  let canaryNs: string;
  let foreignVersion: string | undefined;
  /** Every token object that admission accepted (bounds the mint count). */
  let accepted = 0;
  /** Material of every malformed key, to look for in logs, events and status. */
  const badKeyMaterial: string[] = [];
  let seq = 0;
  const next = (prefix: string) => `${prefix}${seq++}`;

  /** Ready reasons that tell a user what to do. KubernetesError is not one: it says "retrying". */
  const clearReasons = errorCodes.filter((c) => c !== "KubernetesError");
  const mints = () => fx.github.sim.counts().byRoute["apps/create-installation-access-token"] ?? 0;

  beforeAll(async () => {
    [ns, canaryNs] = await Promise.all([fx.withApp("hostile"), fx.withApp("canary")]);
    const foreign = await kube.core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: "foreign" }, stringData: { token: "hand-made" } },
    });
    foreignVersion = foreign.metadata?.resourceVersion;
    expect(
      (await kubectl(["-n", canaryNs, "apply", "-f", "-"], { input: tokenYaml("canary", {}) })).code,
    ).toBe(0);
    // expect.poll works only inside a test: wait the way a user would.
    const waited = await kubectl([
      "-n",
      canaryNs,
      "wait",
      "--for=condition=Ready",
      "ghat/canary",
      "--timeout=60s",
    ]);
    expect(waited.code, waited.stderr).toBe(0);
  });

  afterAll(() => {
    writeLocal("hostile-operator.log", fx.running?.logs.join("") ?? "");
  });

  // -------------------------------------------------------------------------------------------
  // Helpers

  const apply = (obj: unknown, namespace?: string): Promise<KubectlResult> =>
    kubectl([...(namespace ? ["-n", namespace] : []), "apply", "-f", "-"], { input: JSON.stringify(obj) });

  const object = (kind: string, name: string, spec: unknown, extra: Record<string, unknown> = {}) => ({
    apiVersion: `${group}/${version}`,
    kind,
    metadata: { name, ...extra },
    spec,
  });

  /** The spec with "@"-prefixed Secret names completed with `name`. */
  function named(spec: Record<string, unknown>, name: string): Record<string, unknown> {
    const fix = (s: unknown) =>
      s && typeof s === "object" && "name" in s && typeof s.name === "string" && s.name.startsWith("@")
        ? { ...s, name: `${name}${s.name.slice(1)}` }
        : s;
    return Array.isArray(spec.secrets) ? { ...spec, secrets: spec.secrets.map(fix) } : spec;
  }

  /**
   * Waits until the token's Ready condition is about its current generation and is `want`
   * (or, without `want`, any settled answer), and returns the token.
   */
  const settle = (namespace: string, name: string, want?: string, timeout = 20_000) =>
    settleReady(
      kube,
      namespace,
      name,
      (r) =>
        want ? r.reason === want : (r.status === "True" && r.reason === "Issued") || r.status === "False",
      { timeout, interval: 100 },
    );

  /** A refusal a user can act on: non-zero exit, the field named, no opaque server error. */
  function expectReadableRefusal(r: KubectlResult, what: string, field?: string, says?: string) {
    expect(r.code, `${what}: kubectl apply succeeded; stdout ${r.stdout}`).not.toBe(0);
    expect(r.stderr, what).toMatch(/\b(spec|metadata)([.[]|: )/);
    expect(r.stderr, what).not.toMatch(
      /Internal error|unknown reason|EOF|panic|deadline exceeded|connection refused/i,
    );
    if (field) expect(r.stderr, what).toContain(field);
    if (says) expect(r.stderr, what).toContain(says);
  }

  /** A Ready condition a user can act on: a known reason and a plain message. */
  function expectClearReady(t: TokenObject, what: string, want?: string, says?: string) {
    const r = ready(t);
    expect(r, what).toBeDefined();
    if (!r) return;
    expect(r.message.trim(), what).not.toBe("");
    expect(r.message, what).not.toMatch(/\[object |\bundefined\b|\bNaN\b|\n\s+at /);
    if (want === "Issued" || (!want && r.status === "True")) {
      expect([r.status, r.reason], `${what}: ${r.message}`).toEqual(["True", "Issued"]);
    } else {
      expect(r.status, `${what}: ${r.message}`).toBe("False");
      expect(clearReasons, `${what}: ${r.reason}: ${r.message}`).toContain(r.reason);
      if (want) expect(r.reason, `${what}: ${r.message}`).toBe(want);
    }
    if (says) expect(r.message, what).toContain(says);
  }

  /** Judges one applied object against what its case expects; returns the token when accepted. */
  async function judge(
    namespace: string,
    name: string,
    what: string,
    expectation: Expectation,
    r: KubectlResult,
  ): Promise<TokenObject | undefined> {
    if ("refused" in expectation) {
      expectReadableRefusal(r, what, expectation.refused, expectation.says);
      return undefined;
    }
    if (r.code !== 0) {
      expect("either" in expectation, `${what} was refused: ${r.stderr}`).toBe(true);
      expectReadableRefusal(r, what);
      return undefined;
    }
    accepted++;
    const want = "reason" in expectation ? expectation.reason : undefined;
    const t = await settle(namespace, name, want).catch((err: unknown) => {
      throw new Error(`${what} (${JSON.stringify(expectation)}): ${(err as Error).message}`);
    });
    expectClearReady(t, what, want, "says" in expectation ? expectation.says : undefined);
    return t;
  }

  const hash = (token: string) => createHash("sha256").update(token).digest("hex").slice(0, 16);
  /** The live simulator token whose hash a Secret's ghat.dev/token-hash names. */
  function liveTokenWithHash(h: string | undefined): string | undefined {
    for (const token of fx.github.sim.state.tokens.keys()) {
      if (hash(token) === h) return fx.github.sim.checkToken(token).live ? token : undefined;
    }
    return undefined;
  }
  const decode = (s: V1Secret | undefined) =>
    Object.fromEntries(
      Object.entries(s?.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]),
    );

  /** Every target Secret is ghat's, holds a live token, and templates rendered exactly. */
  async function expectOutputs(namespace: string, t: TokenObject, what: string) {
    const targets = (t.spec.secrets ?? []) as {
      name: string;
      format?: string;
      template?: { data: Record<string, string> };
    }[];
    for (const target of targets) {
      const s = await kube.secret(namespace, target.name);
      expect(s?.metadata?.labels?.["ghat.dev/token"], `${what}: Secret ${target.name}`).toBe(t.metadata.name);
      expect(s?.metadata?.ownerReferences?.[0]?.name, what).toBe(t.metadata.name);
      const token = liveTokenWithHash(s?.metadata?.annotations?.["ghat.dev/token-hash"]);
      expect(token, `${what}: Secret ${target.name} holds no live token`).toBeDefined();
      if (target.format === "template" && token && target.template) {
        const values = {
          token,
          username: "x-access-token",
          host: new URL(fx.github.sim.url).host,
          owner: "acme",
          expiresAt: s?.metadata?.annotations?.["ghat.dev/expires-at"] ?? "",
          apiUrl: fx.github.sim.url,
        };
        const data = decode(s);
        for (const [key, src] of Object.entries(target.template.data)) {
          expect(data[key], `${what}: key ${key}`).toBe(rendered(parseBack(src), values));
        }
      }
    }
  }

  /** Valid templates from the generator are literal text and placeholders; re-split one for the model. */
  function parseBack(src: string): Segment[] {
    const out: Segment[] = [];
    let i = 0;
    for (const m of src.matchAll(/\{\{([^}]*)\}\}/g)) {
      if (m.index > i) out.push({ text: src.slice(i, m.index) });
      const [variable = "", ...pipes] = (m[1] ?? "").split("|").map((p) => p.trim());
      out.push({
        text: m[0],
        variable: variable as "token",
        filters: pipes.map((p) => {
          const d = p.match(/^default "([^"]*)"$/);
          return d ? { name: "default", arg: d[1] ?? "" } : { name: p as "base64" };
        }),
      });
      i = m.index + m[0].length;
    }
    if (i < src.length) out.push({ text: src.slice(i) });
    return out;
  }

  /** Substrings of a key long enough to identify it, without its armour lines. */
  function material(value: string | Buffer): string[] {
    const texts = typeof value === "string" ? [value] : [value.toString("utf8"), value.toString("base64")];
    return texts.flatMap((text) => {
      const body = text
        .split("\n")
        .filter((l) => !l.startsWith("-----"))
        .join("")
        .replace(/\s+/g, "");
      const chunks: string[] = [];
      for (let i = 0; i + 24 <= body.length && chunks.length < 200; i += 12)
        chunks.push(body.slice(i, i + 24));
      return chunks;
    });
  }

  async function createKeySecret(namespace: string, name: string, data: Record<string, string | Buffer>) {
    await kube.core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name },
        data: Object.fromEntries(
          Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString("base64")]),
        ),
      },
    });
  }

  // -------------------------------------------------------------------------------------------
  // Specs

  it("hostile GitHubAppToken specs are refused naming the field, or end in a clear Ready", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(hostileToken, { minLength: 1, maxLength: 4 }), async (cases: Case[]) => {
        await Promise.all(
          cases.map(async (c) => {
            const name = next("t");
            const spec = named(c.spec, name);
            const r = await apply(object("GitHubAppToken", name, spec), ns);
            const what = `${c.label} ${name} ${JSON.stringify(spec).slice(0, 600)}`;
            const t = await judge(ns, name, what, c.expect, r);
            if (t && "reason" in c.expect && c.expect.reason === "Issued") await expectOutputs(ns, t, what);
          }),
        );
      }),
      { numRuns: 40, endOnFailure: true },
    );
    const foreign = await kube.secret(ns, "foreign");
    expect(foreign?.metadata?.resourceVersion, "the foreign Secret was written").toBe(foreignVersion);
    expect(foreign?.metadata?.ownerReferences).toBeUndefined();
  });

  it("hostile GitHubApp specs and key Secrets are refused naming the field, or end in a clear Ready", async () => {
    const appNs = await fx.withApp("hostile-apps");
    await fc.assert(
      fc.asyncProperty(
        fc.array(hostileApp(fx.github.sim.url, fx.github.keys.privateKeyPkcs1Pem), {
          minLength: 1,
          maxLength: 3,
        }),
        async (cases) => {
          await Promise.all(
            cases.map(async (c) => {
              const name = next("a");
              const ref = c.spec.privateKeySecretRef as { name?: string } | undefined;
              const spec =
                ref?.name?.startsWith("@") === true
                  ? { ...c.spec, privateKeySecretRef: { ...ref, name: `${name}${ref.name.slice(1)}` } }
                  : c.spec;
              if (c.keyData) await createKeySecret(appNs, `${name}-key`, c.keyData);
              const what = `GitHubApp ${c.label} ${name} ${JSON.stringify(spec).slice(0, 400)}`;
              const r = await apply(object("GitHubApp", name, spec), appNs);
              if ("refused" in c.expect) {
                expectReadableRefusal(r, what, c.expect.refused, c.expect.says);
                return;
              }
              if (r.code !== 0) {
                expect("either" in c.expect, `${what} was refused: ${r.stderr}`).toBe(true);
                expectReadableRefusal(r, what);
                return;
              }
              const tr = await apply(
                object(
                  "GitHubAppToken",
                  `${name}-t`,
                  named({ ...tokenSpec(), appRef: { name } }, `${name}-t`),
                ),
                appNs,
              );
              expect(tr.code, tr.stderr).toBe(0);
              await judge(appNs, `${name}-t`, what, c.expect, tr);
            }),
          );
        },
      ),
      { numRuns: 30, endOnFailure: true },
    );
  });

  it("hostile ClusterGitHubApp policies are refused naming the field, or end in a clear Ready", async () => {
    const clusterNs = await newNamespace("hostile-cluster");
    await kubectl(["label", "namespace", clusterNs, "hostile=yes"]);
    await createKeySecret(fx.opNs, "org-key", { "private-key.pem": fx.github.keys.privateKeyPkcs8Pem });
    await fc.assert(
      fc.asyncProperty(fc.array(hostilePolicy, { minLength: 1, maxLength: 3 }), async (cases) => {
        await Promise.all(
          cases.map(async (c) => {
            const name = next(`${runLabel}-`);
            const policy = JSON.parse(
              JSON.stringify(c.policy).replaceAll('"@ns"', JSON.stringify(clusterNs)),
            );
            const what = `ClusterGitHubApp ${c.label} ${name} ${JSON.stringify(policy).slice(0, 400)}`;
            const r = await apply(
              object(
                "ClusterGitHubApp",
                name,
                { appId: 4242, privateKeySecretRef: { name: "org-key" }, baseUrl: fx.github.sim.url, policy },
                { labels: { "hostile.test/run": runLabel } },
              ),
            );
            if ("refused" in c.expect) {
              expectReadableRefusal(r, what, c.expect.refused, c.expect.says);
              return;
            }
            expect(r.code, `${what}: ${r.stderr}`).toBe(0);
            const t = `${name.slice(runLabel.length + 1)}-t`;
            const tr = await apply(
              object("GitHubAppToken", t, {
                ...c.token,
                appRef: { kind: "ClusterGitHubApp", name },
                secrets: [{ name: `${t}-out` }],
              }),
              clusterNs,
            );
            await judge(clusterNs, t, what, c.expect, tr);
          }),
        );
      }),
      { numRuns: 30, endOnFailure: true },
    );
  });

  function tokenSpec(): Record<string, unknown> {
    return {
      appRef: { name: "app" },
      installation: { owner: "acme" },
      permissions: { contents: "read" },
      secrets: [{ name: "@-out" }],
    };
  }

  // -------------------------------------------------------------------------------------------
  // Private keys

  it("every malformed private key ends in InvalidPrivateKey or PrivateKeyNotFound, without its material", async () => {
    const keyNs = await newNamespace("hostile-keys");
    const shapes = malformedKeys(fx.github.keys.privateKeyPkcs1Pem);
    await Promise.all(
      shapes.map(async (shape: KeyShape, i) => {
        if (shape.missing !== "secret") {
          await createKeySecret(keyNs, `k${i}`, {
            [shape.missing === "key" ? "id_rsa" : "private-key.pem"]: shape.value ?? "",
          });
        }
        if (shape.value !== undefined) badKeyMaterial.push(...material(shape.value));
      }),
    );
    const objects = shapes.flatMap((_, i) => [
      object("GitHubApp", `a${i}`, {
        appId: 4242,
        privateKeySecretRef: { name: `k${i}` },
        baseUrl: fx.github.sim.url,
      }),
      object("GitHubAppToken", `t${i}`, named({ ...tokenSpec(), appRef: { name: `a${i}` } }, `t${i}`)),
    ]);
    const r = await apply({ apiVersion: "v1", kind: "List", items: objects }, keyNs);
    expect(r.code, r.stderr).toBe(0);
    accepted += shapes.length;
    await Promise.all(
      shapes.map(async (shape, i) => {
        const want = shape.missing ? "PrivateKeyNotFound" : "InvalidPrivateKey";
        const t = await settle(keyNs, `t${i}`, want);
        const what = `key ${shape.label}`;
        expectClearReady(t, what, want, shape.missing ? `"k${i}"` : "private key");
        const message = ready(t)?.message ?? "";
        for (const chunk of shape.value === undefined ? [] : material(shape.value)) {
          expect(message.includes(chunk), `${what}: the message shows key material`).toBe(false);
        }
      }),
    );
  });

  it("randomly damaged keys end in InvalidPrivateKey (or a rejected JWT when the body still parses)", async () => {
    const keyNs = await newNamespace("hostile-damage");
    await fc.assert(
      fc.asyncProperty(
        fc.array(damagedKey(fx.github.keys.privateKeyPkcs1Pem), { minLength: 3, maxLength: 3 }),
        async (keys) => {
          await Promise.all(
            keys.map(async (k) => {
              const name = next("d");
              const value = k.label.endsWith("random bytes") ? Buffer.from(k.value, "latin1") : k.value;
              badKeyMaterial.push(...material(value));
              await createKeySecret(keyNs, `${name}-key`, { "private-key.pem": value });
              const r = await apply(
                {
                  apiVersion: "v1",
                  kind: "List",
                  items: [
                    object("GitHubApp", name, {
                      appId: 4242,
                      privateKeySecretRef: { name: `${name}-key` },
                      baseUrl: fx.github.sim.url,
                    }),
                    object("GitHubAppToken", name, named({ ...tokenSpec(), appRef: { name } }, name)),
                  ],
                },
                keyNs,
              );
              expect(r.code, r.stderr).toBe(0);
              accepted++;
              // The token may be reconciled before the cache holds the App applied beside it
              // (AppNotFound for a moment; the App's arrival brings it back): wait past that.
              const t = await settleReady(
                kube,
                keyNs,
                name,
                (r) => r.reason !== "AppNotFound" && (r.reason === "Issued" || r.status === "False"),
                { timeout: 20_000, interval: 100 },
              );
              const reason = ready(t)?.reason;
              const allowed = k.bodyChanged
                ? ["InvalidPrivateKey", "JWTRejected", "Issued"]
                : ["InvalidPrivateKey"];
              expect(allowed, `${k.label}: ${describeReady(t)}`).toContain(reason);
              expectClearReady(t, k.label);
              for (const chunk of material(value))
                expect(ready(t)?.message.includes(chunk), k.label).toBe(false);
            }),
          );
        },
      ),
      { numRuns: 10, endOnFailure: true },
    );
  });

  // -------------------------------------------------------------------------------------------
  // Templates

  it("templates that try to escape or explode end in InvalidSpec with a position, or render literally", async () => {
    const tplNs = await fx.withApp("hostile-tpl");
    const check = async (segments: Segment[]) => {
      const name = next("p");
      const src = source(segments);
      const r = await apply(
        object("GitHubAppToken", name, {
          ...tokenSpec(),
          secrets: [{ name: `${name}-out`, format: "template", template: { data: { out: src } } }],
        }),
        tplNs,
      );
      const what = `template ${JSON.stringify(src.slice(0, 300))}`;
      expect(r.code, `${what}: ${r.stderr}`).toBe(0);
      accepted++;
      const problem = firstProblem(segments);
      const t = await settle(tplNs, name, problem ? "InvalidSpec" : "Issued");
      if (problem) {
        expectClearReady(t, what, "InvalidSpec", problem.position);
        expect(ready(t)?.message, what).toContain(problem.says.slice(0, 60));
        expect(await kube.secret(tplNs, `${name}-out`), `${what}: a Secret was written`).toBeUndefined();
      } else {
        expectClearReady(t, what, "Issued");
        await expectOutputs(tplNs, t, what);
      }
    };
    await fc.assert(
      fc.asyncProperty(fc.array(template, { minLength: 3, maxLength: 3 }), async (templates) => {
        await Promise.all(templates.map(check));
      }),
      { numRuns: 15, endOnFailure: true },
    );
    // Explosion: a 534-byte template of 58 base64 filters once grew the operator to 1.3 GB.
    // It is refused before anything is rendered, naming where.
    const bomb = next("p");
    const bombTemplate = `{{ apiUrl${" | base64".repeat(58)} }}`;
    const b = await apply(
      object("GitHubAppToken", bomb, {
        ...tokenSpec(),
        secrets: [{ name: `${bomb}-out`, format: "template", template: { data: { out: bombTemplate } } }],
      }),
      tplNs,
    );
    expect(b.code, b.stderr).toBe(0);
    expectClearReady(
      await settle(tplNs, bomb, "InvalidSpec"),
      "bomb",
      "InvalidSpec",
      "line 1, column 85: more than 8 filters in one expression",
    );
    // 7,000 placeholders (63 KB): over the 16 KiB a template may hold, refused at admission.
    const name = next("p");
    const r = await apply(
      object("GitHubAppToken", name, {
        ...tokenSpec(),
        secrets: [
          {
            name: `${name}-out`,
            format: "template",
            template: { data: { out: "{{token}}".repeat(7000) } },
          },
        ],
      }),
      tplNs,
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/spec\.secrets\[0\]\.template\.data\.out|Too long/);
  });

  // -------------------------------------------------------------------------------------------
  // Hand edits of managed Secrets

  it("managed Secrets edited by hand are restored, or left alone as foreign, without a crash", async () => {
    const editNs = await fx.withApp("hostile-edit");
    const anchor = await kube.core.createNamespacedConfigMap({
      namespace: editNs,
      body: { metadata: { name: "anchor" } },
    });
    const pool = Array.from({ length: 24 }, (_, i) => `e${i}`);
    const items = pool.map((name, i) =>
      object(
        "GitHubAppToken",
        name,
        named(
          {
            ...tokenSpec(),
            secrets: i % 2 ? [{ name: "@-a" }, { name: "@-b", format: "basicAuth" }] : [{ name: "@-a" }],
          },
          name,
        ),
      ),
    );
    const r = await apply({ apiVersion: "v1", kind: "List", items }, editNs);
    expect(r.code, r.stderr).toBe(0);
    accepted += pool.length;
    await Promise.all(pool.map((name) => settle(editNs, name, "Issued")));

    let touches = 0;
    const editOne = async (name: string, list: Edit[]) => {
      const t = (await kube.getToken(editNs, name)) as TokenObject & { metadata: { uid?: string } };
      const uid = t.metadata.uid;
      const targets = (t.spec.secrets as { name: string; format?: string }[]).map((s) => s.name);
      const target = targets[0] ?? "";
      const what = `${name} ${JSON.stringify(list).slice(0, 300)}`;
      let outcome: { deleted: true } | { deleted: false; foreign: boolean; version: string | undefined } = {
        deleted: true,
      };
      if (list.some((e) => e.op === "deleteSecret")) {
        await kube.core.deleteNamespacedSecret({ namespace: editNs, name: target });
      } else {
        for (let attempt = 0; ; attempt++) {
          const s = await kube.core.readNamespacedSecret({ namespace: editNs, name: target });
          for (const e of list) handEdit(s, e, anchor.metadata?.uid ?? "");
          const foreign =
            !(s.metadata?.ownerReferences ?? []).some((o) => o.uid === uid) ||
            s.metadata?.labels?.["ghat.dev/token"] !== name;
          try {
            const written = await kube.core.replaceNamespacedSecret({
              namespace: editNs,
              name: target,
              body: s,
            });
            outcome = { deleted: false, foreign, version: written.metadata?.resourceVersion };
            break;
          } catch (err) {
            // ghat may restore the Secret between our read and write: read it again. Anything
            // but that conflict is a bad edit of the test's own making: name it.
            const code = (err as { code?: number }).code;
            if (code !== 409 || attempt > 5)
              throw new Error(`${what}: the hand edit was refused (${code}): ${err}`);
          }
        }
      }
      // Some edits send ghat no event (its watch selects by label): a touch of the token does.
      await kube.custom.patchNamespacedCustomObject({
        group,
        version,
        namespace: editNs,
        plural: "githubapptokens",
        name,
        body: [
          { op: "add", path: "/metadata/annotations", value: { "hostile.test/touch": String(touches++) } },
        ],
      });
      if (!outcome.deleted && outcome.foreign) {
        const after = await settle(editNs, name, "SecretConflict");
        expectClearReady(after, what, "SecretConflict", "ghat never overwrites it");
        const s = await kube.secret(editNs, target);
        expect(s?.metadata?.resourceVersion, `${what}: ghat wrote a Secret that is no longer its own`).toBe(
          outcome.version,
        );
        return;
      }
      await expect
        .poll(
          async () => {
            const now = await kube.getToken(editNs, name);
            if (ready(now)?.reason !== "Issued") return describeReady(now);
            for (const [i, secretName] of targets.entries()) {
              const s = await kube.secret(editNs, secretName);
              const data = decode(s);
              const held = i === 0 ? data.token : data.password;
              if (!s?.metadata?.ownerReferences?.some((o) => o.uid === uid)) return `${secretName}: no owner`;
              if (s.metadata.labels?.["app.kubernetes.io/managed-by"] !== "ghat")
                return `${secretName}: not labelled`;
              if (held === undefined || liveTokenWithHash(hash(held)) !== held)
                return `${secretName}: no live token`;
              if (s.metadata.annotations?.["ghat.dev/token-hash"] !== hash(held))
                return `${secretName}: stale hash`;
              if (Number.isNaN(Date.parse(s.metadata.annotations?.["ghat.dev/expires-at"] ?? "")))
                return `${secretName}: no expiry`;
            }
            return "restored";
          },
          { timeout: 20_000, interval: 100 },
        )
        .toBe("restored");
    };
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.tuple(edits, edits), async (pair) => {
        const names = [pool[n++ % pool.length], pool[n++ % pool.length]] as string[];
        await Promise.all(pair.map((list, i) => editOne(names[i] ?? "", list)));
      }),
      { numRuns: 12, endOnFailure: true },
    );
  });

  // -------------------------------------------------------------------------------------------
  // The operator after all that

  it("stays quiet: no hot loop in reconciles, mints or Kubernetes writes", async () => {
    if (mints() > 2 * accepted + 20) {
      // Name the tokens that minted most, with their specs, to make the failure actionable.
      const byToken = new Map<string, number>();
      for (const line of fx.op.logs.join("").split("\n")) {
        if (!line.includes('"msg":"Minted token"')) continue;
        const l = JSON.parse(line) as { namespace: string; name: string };
        byToken.set(`${l.namespace}/${l.name}`, (byToken.get(`${l.namespace}/${l.name}`) ?? 0) + 1);
      }
      const worst = [...byToken].sort((a, b) => b[1] - a[1]).slice(0, 3);
      const specs = await Promise.all(
        worst.map(async ([id, n]) => {
          const [namespace = "", name = ""] = id.split("/");
          return `${id} minted ${n} times: ${JSON.stringify((await kube.getToken(namespace, name))?.spec)}`;
        }),
      );
      expect.fail(`mints over the whole file: ${mints()} for ${accepted} tokens\n${specs.join("\n")}`);
    }
    const reconciles = async () =>
      (await fx.op.operator.metrics.reconcileDuration.get()).values.find((v) =>
        v.metricName?.endsWith("_count"),
      )?.value ?? 0;
    const writes = new Map<string, number>();
    const watches = await Promise.all(
      [
        {
          path: `/apis/${group}/${version}/githubapptokens`,
          list: () => kube.custom.listClusterCustomObject({ group, version, plural: "githubapptokens" }),
        },
        {
          path: "/api/v1/secrets",
          labelSelector: "app.kubernetes.io/managed-by=ghat",
          list: () =>
            kube.core.listSecretForAllNamespaces({ labelSelector: "app.kubernetes.io/managed-by=ghat" }),
        },
      ].map(async ({ path, list, labelSelector }) => {
        const resourceVersion = ((await list()) as { metadata?: { resourceVersion?: string } }).metadata
          ?.resourceVersion;
        return new Watch(kube.kc).watch(
          path,
          { resourceVersion, ...(labelSelector ? { labelSelector } : {}) },
          (type: string, obj: KubernetesObject) => {
            const key = `${path.endsWith("secrets") ? "Secret" : "GitHubAppToken"} ${obj.metadata?.namespace}/${obj.metadata?.name} ${type}`;
            writes.set(key, (writes.get(key) ?? 0) + 1);
          },
          () => undefined,
        );
      }),
    );
    // Quiet starts once the work the earlier cases queued is done (on a loaded machine their
    // last reconciles can still be running); what follows must then stay quiet.
    await fx.op.operator.controller.queue.idle();
    const before = { mints: mints(), calls: fx.github.sim.counts().total, reconciles: await reconciles() };
    const start = Date.now();
    // Five seconds in which nothing changes; sampled so a hot loop fails at once.
    await expect
      .poll(
        async () => {
          const spent = (await reconciles()) - before.reconciles;
          if (spent > 100) return `hot loop: ${spent} reconciles`;
          if (mints() - before.mints > 2) return `hot loop: ${mints() - before.mints} mints`;
          return Date.now() - start >= 5_000 ? "quiet" : "observing";
        },
        { timeout: 10_000, interval: 250 },
      )
      .toMatch(/^(quiet|hot loop.*)$/)
      .then(() => undefined);
    for (const w of watches) w.abort();
    expect((await reconciles()) - before.reconciles, "reconciles in 5 s of quiet").toBeLessThanOrEqual(100);
    expect(mints() - before.mints, "mints in 5 s of quiet").toBeLessThanOrEqual(2);
    expect(fx.github.sim.counts().total - before.calls, "GitHub calls in 5 s of quiet").toBeLessThanOrEqual(
      10,
    );
    const busy = [...writes].filter(([, count]) => count > 3);
    expect(busy, "objects written more than 3 times in 5 s of quiet").toEqual([]);
  });

  it("still reconciles: a change to the canary token is Ready again with a fresh token", async () => {
    const before = await kube.secretValue(canaryNs, "canary-token");
    const r = await kubectl(["-n", canaryNs, "apply", "-f", "-"], {
      input: tokenYaml("canary", { permissions: { contents: "read", issues: "read" } }),
    });
    expect(r.code, r.stderr).toBe(0);
    await expect
      .poll(
        async () => {
          const t = await kube.getToken(canaryNs, "canary");
          return t?.status?.observedGeneration === 2 ? describeReady(t).split(":")[0] : describeReady(t);
        },
        { timeout: 20_000, interval: 100 },
      )
      .toMatch(/^Ready True Issued/);
    const after = (await kube.secretValue(canaryNs, "canary-token")) ?? "";
    expect(after).not.toBe(before);
    expect(fx.github.sim.checkToken(after).scope?.permissions).toEqual({ contents: "read", issues: "read" });
  });

  it("leaks no token or key, malformed keys included, into logs, events, status or spec", async () => {
    await fx.expectNoLeaks();
    const events = (await kubectl(["get", "events", "-A", "-o", "json"])).stdout;
    const objects = (
      await kubectl(["get", "githubapptokens,githubapps,clustergithubapps", "-A", "-o", "json"])
    ).stdout;
    const haystack = [...allLogs, events, objects].join("\n");
    const shown = badKeyMaterial.filter((chunk) => haystack.includes(chunk));
    expect(shown.length, "chunks of malformed keys in logs, events or objects").toBe(0);
  });
});

/** Applies one hand edit to a Secret read from the API server. */
function handEdit(s: V1Secret, e: Edit, anchorUid: string): void {
  const meta = s.metadata ?? {};
  s.metadata = meta;
  const data = s.data ?? {};
  s.data = data;
  const b64 = (v: string) => Buffer.from(v).toString("base64");
  const firstKey = Object.keys(data).sort()[0];
  switch (e.op) {
    case "deleteSecret":
      return;
    case "deleteDataKey":
      if (firstKey !== undefined) delete data[firstKey];
      return;
    case "garbageValue":
      for (const k of ["token", "password"]) if (k in data) data[k] = b64(e.value);
      return;
    case "addDataKey":
      data[e.key] = b64(e.value);
      return;
    case "removeAnnotation":
      if (meta.annotations) delete meta.annotations[e.key];
      return;
    case "removeAllAnnotations":
      meta.annotations = {};
      return;
    case "setAnnotation":
      meta.annotations = { ...meta.annotations, [e.key]: e.value };
      return;
    case "removeLabel":
      if (meta.labels) delete meta.labels[e.key];
      return;
    case "removeAllLabels":
      meta.labels = {};
      return;
    case "setLabel":
      meta.labels = { ...meta.labels, [e.key]: e.value };
      return;
    case "removeOwnerReferences":
      meta.ownerReferences = [];
      return;
    case "addOwnerReference":
      meta.ownerReferences = [
        ...(meta.ownerReferences ?? []),
        { apiVersion: "v1", kind: "ConfigMap", name: "anchor", uid: anchorUid },
      ];
      return;
  }
}
