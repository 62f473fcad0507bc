import type { KeyObject } from "node:crypto";
import { z } from "zod";
import { type AppSpec, type ClusterAppPolicy, clusterGitHubApp, githubApp } from "../api/githubapp.ts";
import type { GitHubAppToken } from "../api/githubapptoken.ts";
import { signerKind } from "../api/signer.ts";
import type { ErrorCode } from "../core/errors.ts";
import { GhatError } from "../core/errors.ts";
import { evaluatePolicy, type PolicyRequest } from "../core/policy.ts";
import type { SignerRegistry } from "../signer/registry.ts";
import { usesOperatorIdentity } from "../signer/registry.ts";
import type { AppSigner } from "../signer/types.ts";

/** Reads what the informers cached; no API calls. */
export interface AppSource {
  app(kind: "GitHubApp" | "ClusterGitHubApp", namespace: string, name: string): unknown;
  /** The key Secret's data (base64 values) or undefined when it does not exist (yet). */
  keySecret(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  namespaceLabels(namespace: string): Record<string, string>;
}

/** An App ready to mint with. */
export interface ResolvedApp {
  kind: "GitHubApp" | "ClusterGitHubApp";
  name: string;
  /** Namespace of the App object (undefined for a ClusterGitHubApp). */
  namespace: string | undefined;
  spec: AppSpec;
  issuer: string;
  /** The parsed private key, or the keyless signer that holds it. */
  key: KeyObject | AppSigner;
  /** A fingerprint of the key (its public half): a rotated key is a new input. */
  keyId: string;
  /** Identifies the App for caches: kind/namespace/name plus issuer and URL. */
  cacheKey: string;
  /** A ClusterGitHubApp's policy, checked again against what GitHub granted. */
  policy?: ClusterAppPolicy | undefined;
}

/** Where an App's GitHub is: enough to revoke a token even when the App may not mint. */
export interface Endpoint {
  baseUrl: string;
  caBundle?: string | undefined;
  proxy?: string | undefined;
}

/**
 * Only what a revocation needs of an App (no key, no policy). One copy per App object version
 * (every token of an App keeps the same one), not one per token and reconcile.
 */
export function endpointOf(e: Endpoint): Endpoint {
  let endpoint = endpoints.get(e);
  if (endpoint === undefined) {
    endpoint = {
      baseUrl: e.baseUrl,
      ...(e.caBundle ? { caBundle: e.caBundle } : {}),
      ...(e.proxy ? { proxy: e.proxy } : {}),
    };
    endpoints.set(e, endpoint);
    endpoints.set(endpoint, endpoint);
  }
  return endpoint;
}

const endpoints = new WeakMap<Endpoint, Endpoint>();

export type AppResolution =
  | { ok: true; app: ResolvedApp }
  | { ok: false; code: ErrorCode; message: string; endpoint?: Endpoint };

export interface AppResolverDeps {
  source: AppSource;
  /** The account login of an installation (cached lookup), for policies on id-named installations. */
  installationOwner: (app: ResolvedApp, installationId: number) => Promise<string>;
  operatorNamespace: string;
  parseKey: (pem: string) => KeyObject;
  /** A stable id of a key (src/github/privatekey.ts keyFingerprint). */
  fingerprint: (key: KeyObject) => string;
  /** Keyless signers (Vault, KMS, HSM); without it an App with `signer` is refused. */
  signers?: SignerRegistry;
  /**
   * Whether a namespaced GitHubApp may use a signer that signs with the operator's own
   * identity (cloud KMS, HSM, Vault Kubernetes auth). Off: only a ClusterGitHubApp may.
   */
  namespacedAmbientSigners?: boolean;
}

/**
 * Finds the App a token refers to and decides whether the token may use it: the App
 * exists and parses, a ClusterGitHubApp's policy admits the token's namespace, and the key
 * Secret holds a usable key. Parsed keys are cached by content hash, never written anywhere.
 */
export class AppResolver {
  readonly #deps: AppResolverDeps;
  readonly #keys = new Map<string, { key: KeyObject; id: string } | GhatError>();

  constructor(deps: AppResolverDeps) {
    this.#deps = deps;
  }

  async resolve(token: GitHubAppToken): Promise<AppResolution> {
    const ns = token.metadata.namespace ?? "";
    const { kind, name } = token.spec.appRef;
    const raw = this.#deps.source.app(kind, kind === "GitHubApp" ? ns : "", name);
    if (raw === undefined) {
      const where = kind === "GitHubApp" ? ` in namespace "${ns}"` : "";
      return { ok: false, code: "AppNotFound", message: `${kind} "${name}"${where} does not exist` };
    }
    let spec: AppSpec;
    let keyNamespace: string;
    let policy: ClusterAppPolicy | undefined;
    if (kind === "GitHubApp") {
      const parsed = parseApp(githubApp, raw);
      if (!parsed.success) return invalidApp(kind, name, parsed.error);
      spec = parsed.data.spec;
      keyNamespace = ns;
    } else {
      const parsed = parseApp(clusterGitHubApp, raw);
      if (!parsed.success) return invalidApp(kind, name, parsed.error);
      const pre = evaluatePolicy(
        name,
        parsed.data.spec.policy,
        policyRequest(token, ns, this.#deps.source, "*"),
      );
      if (!pre.allowed && pre.rule !== "repositories")
        return { ok: false, code: "NotPermitted", message: pre.message, endpoint: parsed.data.spec };
      policy = parsed.data.spec.policy;
      spec = parsed.data.spec;
      keyNamespace = this.#deps.operatorNamespace;
    }
    const loaded = await this.#load(kind, name, ns, keyNamespace, spec, policy);
    if (!loaded.ok) return loaded;
    const app = loaded.app;
    if (policy) {
      const inst = token.spec.installation;
      const owner =
        inst.owner ??
        inst.repository?.split("/")[0] ??
        (inst.id === undefined ? undefined : await this.#deps.installationOwner(app, inst.id));
      const decision = evaluatePolicy(name, policy, policyRequest(token, ns, this.#deps.source, owner));
      if (!decision.allowed)
        return { ok: false, code: "NotPermitted", message: decision.message, endpoint: endpointOf(spec) };
    }
    return { ok: true, app };
  }

  /**
   * An App on its own, for its status: exists, parses, and its key or signer is usable. No
   * token, so no policy: that is decided per token in `resolve`.
   */
  async resolveApp(
    kind: "GitHubApp" | "ClusterGitHubApp",
    namespace: string,
    name: string,
  ): Promise<AppResolution> {
    const raw = this.#deps.source.app(kind, kind === "GitHubApp" ? namespace : "", name);
    if (raw === undefined)
      return { ok: false, code: "AppNotFound", message: `${kind} "${name}" does not exist` };
    const parsed = kind === "GitHubApp" ? parseApp(githubApp, raw) : parseApp(clusterGitHubApp, raw);
    if (!parsed.success) return invalidApp(kind, name, parsed.error);
    const keyNamespace = kind === "GitHubApp" ? namespace : this.#deps.operatorNamespace;
    const policy = parsed.data.kind === "ClusterGitHubApp" ? parsed.data.spec.policy : undefined;
    return this.#load(kind, name, namespace, keyNamespace, parsed.data.spec, policy);
  }

  async #load(
    kind: "GitHubApp" | "ClusterGitHubApp",
    name: string,
    ns: string,
    keyNamespace: string,
    spec: AppSpec,
    policy: ClusterAppPolicy | undefined,
  ): Promise<AppResolution> {
    const endpoint: Endpoint = { baseUrl: spec.baseUrl, caBundle: spec.caBundle, proxy: spec.proxy };
    const key = spec.signer
      ? await this.#signer(kind, name, ns, keyNamespace, spec.signer, endpoint)
      : await this.#secretKey(kind, name, keyNamespace, spec.privateKeySecretRef, endpoint);
    if ("ok" in key) return key;
    const issuer = spec.appId !== undefined ? String(spec.appId) : (spec.clientId ?? "");
    const namespace = kind === "GitHubApp" ? ns : undefined;
    const app: ResolvedApp = {
      kind,
      name,
      namespace,
      spec,
      issuer,
      key: key.key,
      keyId: key.id,
      cacheKey: `${kind}/${namespace ?? ""}/${name}/${issuer}@${spec.baseUrl}`,
      policy,
    };
    return { ok: true, app };
  }

  async #secretKey(
    kind: string,
    name: string,
    keyNamespace: string,
    ref: AppSpec["privateKeySecretRef"],
    endpoint: Endpoint,
  ): Promise<{ key: KeyObject; id: string } | (AppResolution & { ok: false })> {
    if (ref === undefined) {
      return {
        ok: false,
        code: "InvalidSpec",
        message: `${kind} "${name}" sets neither privateKeySecretRef nor signer`,
      };
    }
    // A name the API server would refuse can only make its field-selected watch fail (400).
    if (!isObjectName(ref.name)) {
      return {
        ok: false,
        code: "InvalidSpec",
        message: `${kind} "${name}": privateKeySecretRef.name "${ref.name}" is not a valid Secret name (lowercase letters, digits, "-" and ".", at most 253 characters)`,
      };
    }
    let data: Record<string, string> | undefined;
    try {
      data = await this.#deps.source.keySecret(keyNamespace, ref.name);
    } catch (err) {
      // A watch the server refuses is a spec problem; a timeout stays an error to retry.
      if (err instanceof GhatError && !err.retryable)
        return { ok: false, code: err.code, message: `${kind} "${name}": ${err.message}` };
      throw err;
    }
    // Failures from here on still say where the App's GitHub is: revoking needs no key.
    if (data === undefined) {
      return {
        ok: false,
        code: "PrivateKeyNotFound",
        message: `Secret "${ref.name}" in namespace "${keyNamespace}" with the private key of ${kind} "${name}" does not exist`,
        endpoint,
      };
    }
    const encoded = data[ref.key];
    if (encoded === undefined) {
      return {
        ok: false,
        code: "PrivateKeyNotFound",
        message: `Secret "${ref.name}" in namespace "${keyNamespace}" has no key "${ref.key}" (it has: ${Object.keys(data).join(", ") || "nothing"})`,
        endpoint,
      };
    }
    const parsedKey = this.#key(encoded);
    if (parsedKey instanceof GhatError) {
      return {
        ok: false,
        code: parsedKey.code,
        message: `Secret "${ref.name}" key "${ref.key}" in namespace "${keyNamespace}": ${parsedKey.message}`,
        endpoint,
      };
    }
    return parsedKey;
  }

  /**
   * A keyless signer. One that signs with the operator's own identity (cloud KMS, HSM, Vault
   * Kubernetes auth) is for ClusterGitHubApps, whose policy says who may use it: in a
   * namespaced GitHubApp it would let any tenant sign with the platform's key.
   */
  async #signer(
    kind: "GitHubApp" | "ClusterGitHubApp",
    name: string,
    namespace: string,
    keyNamespace: string,
    spec: NonNullable<AppSpec["signer"]>,
    endpoint: Endpoint,
  ): Promise<{ key: AppSigner; id: string } | (AppResolution & { ok: false })> {
    const backend = signerKind(spec) ?? "signer";
    if (kind === "GitHubApp" && usesOperatorIdentity(spec) && !this.#deps.namespacedAmbientSigners) {
      return {
        ok: false,
        code: "NotPermitted",
        message: `GitHubApp "${name}": signer ${backend} signs with the operator's own identity, so only a ClusterGitHubApp (whose policy says who may use it) may use it; a GitHubApp may use vaultTransit with auth.tokenSecretRef, or the platform team can allow this with --namespaced-ambient-signers`,
        endpoint,
      };
    }
    const signers = this.#deps.signers;
    if (!signers) {
      return {
        ok: false,
        code: "InvalidSpec",
        message: `${kind} "${name}": keyless signing is not enabled in this operator`,
        endpoint,
      };
    }
    try {
      const signer = await signers.get(`${kind}/${namespace}/${name}`, spec, keyNamespace);
      return { key: signer, id: signer.id };
    } catch (err) {
      if (err instanceof GhatError && !err.retryable)
        return { ok: false, code: err.code, message: `${kind} "${name}": ${err.message}`, endpoint };
      throw err;
    }
  }

  #key(encoded: string): { key: KeyObject; id: string } | GhatError {
    const cached = this.#keys.get(encoded);
    if (cached) return cached;
    let result: { key: KeyObject; id: string } | GhatError;
    try {
      const key = this.#deps.parseKey(Buffer.from(encoded, "base64").toString("utf8"));
      result = { key, id: this.#deps.fingerprint(key) };
    } catch (err) {
      result =
        err instanceof GhatError
          ? err
          : new GhatError("InvalidPrivateKey", "the private key could not be read");
    }
    // The cache is keyed by the Secret's content, so a rotated key is a new entry; keep it small.
    if (this.#keys.size > 64) this.#keys.clear();
    this.#keys.set(encoded, result);
    return result;
  }
}

function policyRequest(
  token: GitHubAppToken,
  ns: string,
  source: AppSource,
  owner: string | undefined,
): PolicyRequest {
  return {
    namespace: ns,
    namespaceLabels: source.namespaceLabels(ns),
    installation: token.spec.installation,
    resolvedOwner: owner,
    permissions: token.spec.permissions,
    repositories: token.spec.repositories,
    repositoryIds: token.spec.repositoryIds,
  };
}

/** A DNS subdomain (RFC 1123): what the API server accepts as a Secret's name. */
function isObjectName(name: string): boolean {
  return name.length <= 253 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(name);
}

/**
 * An App as read from the cache, parsed once per object: the informer replaces the object on
 * every change, so its identity is its version. Every reconcile of every token resolves its
 * App, and parsing it each time was a large part of a burst's CPU.
 */
const parsedApps = new WeakMap<object, z.ZodSafeParseResult<unknown>>();
function parseApp<T extends z.ZodType>(schema: T, raw: unknown): z.ZodSafeParseResult<z.output<T>> {
  if (typeof raw !== "object" || raw === null) return schema.safeParse(raw);
  const hit = parsedApps.get(raw) as z.ZodSafeParseResult<z.output<T>> | undefined;
  if (hit) return hit;
  const parsed = schema.safeParse(raw);
  parsedApps.set(raw, parsed);
  return parsed;
}

function invalidApp(kind: string, name: string, error: z.ZodError): AppResolution {
  return {
    ok: false,
    code: "InvalidSpec",
    message: `${kind} "${name}" is invalid: ${z.prettifyError(error)}`,
  };
}
