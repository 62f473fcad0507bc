import {
  constants,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  sign as cryptoSign,
  generateKeyPair,
  generateKeyPairSync,
  type KeyObject,
  privateDecrypt,
  randomBytes,
} from "node:crypto";
import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import { request as httpsRequest } from "node:https";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";

/**
 * A local stand-in for HashiCorp Vault: a contract server written from Vault's published HTTP
 * API reference, NOT Vault. It implements just the endpoints ghat's Vault transit signer and
 * its tests use, strictly (unknown fields and wrong types are refused), with real cryptography:
 * - transit: https://developer.hashicorp.com/vault/api-docs/secret/transit
 *   (create key, read key, get wrapping key, import key, import key version, sign data)
 * - BYOK envelope: https://developer.hashicorp.com/vault/docs/secrets/transit#bring-your-own-key-byok
 *   (RSA-OAEP of an ephemeral AES-256 key with the RSA-4096 wrapping key, then AES-KWP, RFC 5649,
 *   of the PKCS#8 DER key)
 * - Kubernetes auth: https://developer.hashicorp.com/vault/api-docs/auth/kubernetes
 *   (config, role, login; login sends a real TokenReview to the configured API server)
 * - mounts: https://developer.hashicorp.com/vault/api-docs/system/mounts and
 *   https://developer.hashicorp.com/vault/api-docs/system/auth
 * - policies: https://developer.hashicorp.com/vault/api-docs/system/policies and
 *   https://developer.hashicorp.com/vault/docs/concepts/policies (path globs `*` and `+`)
 * - tokens: https://developer.hashicorp.com/vault/api-docs/auth/token
 * - health: https://developer.hashicorp.com/vault/api-docs/system/health
 * - errors: https://developer.hashicorp.com/vault/api-docs#http-status-codes
 *   (`{"errors": ["..."]}`, 400 invalid request, 403 forbidden, 404 unknown path)
 * Where the reference does not say what Vault answers (exact error texts), the texts are those
 * of Vault's sources as best remembered; those are marked "guess" below.
 * Stricter than Vault on purpose: Vault ignores unknown request fields with a warning; this
 * server answers 400, so a typo in ghat's requests fails a test instead of passing silently.
 */
export interface ContractVault {
  /** http://127.0.0.1:PORT */
  address: string;
  rootToken: string;
  /** One line per request: time, method, path, status (never bodies or tokens). */
  log: string[];
  /** The next `times` requests (health excepted) answer `status` with Vault's error shape. */
  failNext(status: number, times?: number): void;
  /**
   * Closes the listener (and every open connection); requests fail to connect until restart.
   * All state is kept until restart() drops it.
   */
  stop(): Promise<void>;
  /**
   * Listens again on the same port with the same root token and wrapping key, and NOTHING else,
   * as a restarted `vault server -dev` (in-memory storage) has: mounts, keys, policies, roles
   * and non-root tokens are gone.
   */
  restart(): Promise<void>;
  close(): Promise<void>;
}

type Capability = "create" | "read" | "update" | "patch" | "delete" | "list" | "sudo" | "deny";
const capabilities = new Set<string>(["create", "read", "update", "patch", "delete", "list", "sudo", "deny"]);

interface Token {
  policies: string[];
  root: boolean;
  /** Epoch ms; Infinity without a TTL. */
  expiresAtMs: number;
  meta: Record<string, string>;
}

interface KeyVersion {
  privateKey?: KeyObject;
  publicKey?: KeyObject;
  creationTime: string;
}

interface TransitKey {
  type: string;
  imported: boolean;
  versions: Map<number, KeyVersion>;
  latest: number;
}

interface KubernetesConfig {
  kubernetesHost: string;
  caCert: string;
  reviewerJwt: string | undefined;
}

interface KubernetesRole {
  names: string[];
  namespaces: string[];
  policies: string[];
  ttlSeconds: number;
  audience: string | undefined;
}

interface PolicyRule {
  path: string;
  capabilities: Set<Capability>;
}

interface State {
  /** mount path (no trailing slash) → engine type */
  mounts: Map<string, string>;
  auths: Map<string, string>;
  keys: Map<string, Map<string, TransitKey>>;
  kubeConfigs: Map<string, KubernetesConfig>;
  kubeRoles: Map<string, Map<string, KubernetesRole>>;
  policies: Map<string, { text: string; rules: PolicyRule[] }>;
  tokens: Map<string, Token>;
}

class VaultError extends Error {
  readonly status: number;
  readonly errors: string[];
  constructor(status: number, errors: string[]) {
    super(errors.join("; "));
    this.status = status;
    this.errors = errors;
  }
}

const bad = (message: string) => new VaultError(400, [message]);
/** Vault's text for an ACL refusal and for a token it does not know. */
const denied = () => new VaultError(403, ["1 error occurred:\n\t* permission denied\n\n"]);
const notFound = () => new VaultError(404, []);
const maxBodyBytes = 1 << 20;

/** The RSA-4096 wrapping key is slow to make: one per process. */
let wrappingKey: Promise<{ privateKey: KeyObject; publicKey: KeyObject }> | undefined;
function theWrappingKey() {
  wrappingKey ??= promisify(generateKeyPair)("rsa", { modulusLength: 4096 });
  return wrappingKey;
}

export async function startContractVault(): Promise<ContractVault> {
  const rootToken = `hvs.ghat-test-${randomBytes(12).toString("hex")}`;
  const failures: number[] = [];
  let state = freshState(rootToken);
  const log: string[] = [];
  await theWrappingKey();

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBodyBytes) chunks.push(chunk);
    });
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://vault");
      const done = (status: number, json: unknown) => {
        log.push(`${new Date().toISOString().slice(11, 19)} ${req.method} ${url.pathname} ${status}`);
        if (status === 204) {
          res.writeHead(204).end();
          return;
        }
        res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(`${JSON.stringify(json)}\n`);
      };
      if (size > maxBodyBytes) return done(413, { errors: ["http: request body too large"] });
      handle(req, url, Buffer.concat(chunks).toString("utf8")).then(
        (answer) => done(answer === undefined ? 204 : 200, answer),
        (err: unknown) => {
          if (err instanceof VaultError) return done(err.status, { errors: err.errors });
          done(500, { errors: [`internal error: ${(err as Error).message}`] });
        },
      );
    });
  });

  async function handle(req: IncomingMessage, url: URL, raw: string): Promise<unknown> {
    const method = req.method ?? "GET";
    if (!url.pathname.startsWith("/v1/")) throw notFound();
    const path = decodeURIComponent(url.pathname.slice(4)).replace(/\/+$/, "");
    if (path === "sys/health") {
      if (method !== "GET" && method !== "HEAD") throw new VaultError(405, []);
      return {
        initialized: true,
        sealed: false,
        standby: false,
        performance_standby: false,
        server_time_utc: Math.floor(Date.now() / 1000),
        version: "contract-server (not Vault)",
        cluster_name: "ghat-test",
      };
    }
    const failure = failures.shift();
    if (failure !== undefined) throw new VaultError(failure, [failureText(failure)]);
    const body = parseBody(raw, method);

    // Logins need no token (https://developer.hashicorp.com/vault/api-docs/auth/kubernetes#login).
    const login = /^auth\/(.+)\/login$/.exec(path);
    if (login && method === "POST" && state.auths.get(login[1] as string) === "kubernetes") {
      return kubernetesLogin(login[1] as string, body);
    }

    const header = req.headers["x-vault-token"];
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const tokenValue = typeof header === "string" ? header : bearer;
    if (!tokenValue) throw denied();
    const token = state.tokens.get(tokenValue);
    if (!token) throw denied();
    if (Date.now() >= token.expiresAtMs) {
      state.tokens.delete(tokenValue);
      throw denied();
    }
    if (!token.root) authorize(token, method, path);
    return route(method, path, body, token);
  }

  /** ACL check: the capability the method needs, on the path, from any of the token's policies. */
  function authorize(token: Token, method: string, path: string): void {
    const need: Capability[] =
      method === "GET" || method === "HEAD"
        ? ["read"]
        : method === "LIST"
          ? ["list"]
          : method === "DELETE"
            ? ["delete"]
            : method === "PATCH"
              ? ["patch"]
              : ["update", "create"];
    // Every token may look itself up (Vault's "default" policy).
    if (path === "auth/token/lookup-self" && token.policies.includes("default")) return;
    // The most specific matching path wins: an exact path beats any glob, and among globs the
    // longest pattern (a guess at Vault's priority rules, which have more tie breaks than this).
    let best = -1;
    for (const name of token.policies) {
      for (const rule of state.policies.get(name)?.rules ?? [])
        best = Math.max(best, matchScore(rule.path, path));
    }
    if (best < 0) throw denied();
    const caps = new Set<Capability>();
    for (const name of token.policies) {
      for (const rule of state.policies.get(name)?.rules ?? []) {
        if (matchScore(rule.path, path) === best) for (const c of rule.capabilities) caps.add(c);
      }
    }
    if (caps.has("deny") || !need.some((c) => caps.has(c))) throw denied();
  }

  async function route(method: string, path: string, body: Record<string, unknown>, token: Token) {
    if (path === "sys/mounts" && method === "GET") return listing(state.mounts, "secret");
    if (path === "sys/auth" && method === "GET") {
      return listing(new Map([["token", "token"], ...state.auths]), "auth");
    }
    const mountPath = /^sys\/(mounts|auth)\/(.+)$/.exec(path);
    if (mountPath && method === "POST") {
      const m = mountPath;
      return enable(m[1] === "auth" ? state.auths : state.mounts, m[2] as string, body, m[1] === "auth");
    }
    const acl = /^sys\/policies\/acl\/([^/]+)$/.exec(path);
    if (acl) return policy(method, acl[1] as string, body);
    if (path === "auth/token/create" && (method === "POST" || method === "PUT")) {
      return createToken(token, body);
    }
    if (path === "auth/token/lookup-self" && method === "GET") {
      return { data: { policies: token.policies, meta: token.meta } };
    }
    const k8s = /^auth\/(.+)\/(config|role\/[^/]+)$/.exec(path);
    if (k8s) {
      const m = k8s;
      const mount = m[1] as string;
      if (state.auths.get(mount) === "kubernetes")
        return kubernetesAdmin(method, mount, m[2] as string, body);
    }
    for (const [mount, type] of state.mounts) {
      if (type === "transit" && path.startsWith(`${mount}/`)) {
        return transit(method, mount, path.slice(mount.length + 1), body);
      }
    }
    throw notFound();
  }

  function listing(mounts: Map<string, string>, kind: string) {
    const data: Record<string, unknown> = {};
    for (const [path, type] of mounts) {
      data[`${path}/`] = { type, description: "", accessor: `${kind}_${type}_${path.length}`, config: {} };
    }
    return { ...data, data };
  }

  /** POST sys/mounts/:path or sys/auth/:path. */
  function enable(mounts: Map<string, string>, path: string, body: Record<string, unknown>, auth: boolean) {
    const fields = check(body, {
      type: "string",
      description: "string",
      config: "map",
      options: "map",
      local: "bool",
      seal_wrap: "bool",
      external_entropy_access: "bool",
      plugin_version: "string",
    });
    const type = fields.type as string | undefined;
    if (!type) throw bad("backend type must be specified as a string");
    const wanted = auth ? ["kubernetes"] : ["transit"];
    if (!wanted.includes(type)) throw bad(`plugin not found in the catalog: ${type}`);
    const clean = path.replace(/\/+$/, "");
    if (
      clean === "" ||
      clean.startsWith("sys") ||
      (!auth && /^(auth|cubbyhole|identity)(\/|$)/.test(clean)) ||
      (auth && clean === "token")
    ) {
      throw bad(`cannot mount at ${clean}/`);
    }
    // Guess: Vault's text for a path already mounted (or nested in a mount).
    for (const existing of mounts.keys()) {
      if (existing === clean || clean.startsWith(`${existing}/`) || existing.startsWith(`${clean}/`)) {
        throw bad(`path is already in use at ${existing}/`);
      }
    }
    mounts.set(clean, type);
    if (!auth) state.keys.set(clean, new Map());
    else {
      state.kubeRoles.set(clean, new Map());
    }
    return undefined;
  }

  /** https://developer.hashicorp.com/vault/api-docs/system/policies#create-update-acl-policy */
  function policy(method: string, name: string, body: Record<string, unknown>) {
    const lower = name.toLowerCase();
    if (method === "GET") {
      const p = state.policies.get(lower);
      if (!p) throw notFound();
      return { data: { name: lower, policy: p.text } };
    }
    if (method === "DELETE") {
      state.policies.delete(lower);
      return undefined;
    }
    if (method !== "PUT" && method !== "POST") throw new VaultError(405, []);
    const fields = check(body, { policy: "string" });
    if (lower === "root") throw bad('cannot update "root" policy');
    const text = fields.policy as string | undefined;
    if (text === undefined || text.trim() === "") throw bad("'policy' parameter not supplied or empty");
    state.policies.set(lower, { text, rules: parsePolicy(text) });
    return undefined;
  }

  /** https://developer.hashicorp.com/vault/api-docs/auth/token#create-token */
  function createToken(parent: Token, body: Record<string, unknown>) {
    const fields = check(body, {
      policies: "strings",
      ttl: "duration",
      explicit_max_ttl: "duration",
      no_default_policy: "bool",
      renewable: "bool",
      display_name: "string",
      meta: "map",
      num_uses: "int",
      period: "duration",
      type: "string",
      no_parent: "bool",
    });
    const asked = (fields.policies as string[] | undefined) ?? parent.policies;
    if (!parent.root && asked.some((p) => !parent.policies.includes(p))) {
      throw bad("child policies must be subset of parent");
    }
    const policies = [...new Set([...(fields.no_default_policy ? [] : ["default"]), ...asked])].filter(
      (p) => p !== "root" || parent.root,
    );
    const ttl = (fields.ttl as number | undefined) ?? 32 * 24 * 3600;
    return { auth: issue(policies, ttl, {}) };
  }

  function issue(policies: string[], ttlSeconds: number, meta: Record<string, string>) {
    const value = `hvs.${randomBytes(24).toString("base64url")}`;
    state.tokens.set(value, {
      policies,
      root: policies.includes("root"),
      expiresAtMs: ttlSeconds > 0 ? Date.now() + ttlSeconds * 1000 : Number.POSITIVE_INFINITY,
      meta,
    });
    return {
      client_token: value,
      accessor: randomBytes(12).toString("base64url"),
      policies,
      token_policies: policies,
      metadata: meta,
      lease_duration: ttlSeconds,
      renewable: true,
      entity_id: "",
      token_type: "service",
      orphan: false,
    };
  }

  /** https://developer.hashicorp.com/vault/api-docs/auth/kubernetes#configure-method and #create-update-role */
  function kubernetesAdmin(method: string, mount: string, what: string, body: Record<string, unknown>) {
    if (what === "config") {
      if (method === "GET") {
        const c = state.kubeConfigs.get(mount);
        if (!c) return { data: {} };
        return { data: { kubernetes_host: c.kubernetesHost, kubernetes_ca_cert: c.caCert } };
      }
      if (method !== "POST" && method !== "PUT") throw new VaultError(405, []);
      const f = check(body, {
        kubernetes_host: "string",
        kubernetes_ca_cert: "string",
        token_reviewer_jwt: "string",
        pem_keys: "strings",
        disable_local_ca_jwt: "bool",
        disable_iss_validation: "bool",
        issuer: "string",
        use_annotations_as_alias_metadata: "bool",
      });
      const host = f.kubernetes_host as string | undefined;
      if (!host) throw bad("no host provided");
      if (f.kubernetes_ca_cert) {
        try {
          createPublicKeyOfCert(f.kubernetes_ca_cert as string);
        } catch {
          throw bad("Configured CA certificate is not valid PEM");
        }
      }
      state.kubeConfigs.set(mount, {
        kubernetesHost: host.replace(/\/+$/, ""),
        caCert: (f.kubernetes_ca_cert as string | undefined) ?? "",
        reviewerJwt: (f.token_reviewer_jwt as string | undefined) || undefined,
      });
      return undefined;
    }
    const role = what.slice("role/".length);
    const roles = state.kubeRoles.get(mount) as Map<string, KubernetesRole>;
    if (method === "GET") {
      const r = roles.get(role);
      if (!r) throw notFound();
      return {
        data: {
          bound_service_account_names: r.names,
          bound_service_account_namespaces: r.namespaces,
          token_policies: r.policies,
          token_ttl: r.ttlSeconds,
          ...(r.audience === undefined ? {} : { audience: r.audience }),
        },
      };
    }
    if (method === "DELETE") {
      roles.delete(role);
      return undefined;
    }
    if (method !== "POST" && method !== "PUT") throw new VaultError(405, []);
    const f = check(body, {
      bound_service_account_names: "strings",
      bound_service_account_namespaces: "strings",
      bound_service_account_namespace_selector: "string",
      audience: "string",
      alias_name_source: "string",
      policies: "strings",
      token_policies: "strings",
      ttl: "duration",
      token_ttl: "duration",
      max_ttl: "duration",
      token_max_ttl: "duration",
      period: "duration",
      token_period: "duration",
      token_type: "string",
      token_bound_cidrs: "strings",
      token_explicit_max_ttl: "duration",
      token_no_default_policy: "bool",
      token_num_uses: "int",
    });
    const names = (f.bound_service_account_names as string[] | undefined) ?? [];
    const namespaces = (f.bound_service_account_namespaces as string[] | undefined) ?? [];
    if (names.length === 0) throw bad('"bound_service_account_names" can not be empty');
    if (namespaces.length === 0 && f.bound_service_account_namespace_selector === undefined) {
      throw bad('"bound_service_account_namespaces" can not be empty');
    }
    const policies = (f.token_policies as string[] | undefined) ?? (f.policies as string[] | undefined) ?? [];
    roles.set(role, {
      names,
      namespaces,
      policies: [...new Set([...(f.token_no_default_policy ? [] : ["default"]), ...policies])],
      ttlSeconds: (f.token_ttl as number | undefined) ?? (f.ttl as number | undefined) ?? 32 * 24 * 3600,
      audience: (f.audience as string | undefined) || undefined,
    });
    return undefined;
  }

  /** https://developer.hashicorp.com/vault/api-docs/auth/kubernetes#login */
  async function kubernetesLogin(mount: string, body: Record<string, unknown>) {
    const f = check(body, { role: "string", jwt: "string" });
    const roleName = f.role as string | undefined;
    const jwt = f.jwt as string | undefined;
    if (!roleName) throw bad("missing role");
    if (!jwt) throw bad("missing jwt");
    const role = state.kubeRoles.get(mount)?.get(roleName);
    // Guess (Vault's source): an unknown role is a 400 with this text.
    if (!role) throw bad(`invalid role name "${roleName}"`);
    const config = state.kubeConfigs.get(mount);
    if (!config) throw bad("could not load backend configuration");
    if (jwt.split(".").length !== 3) throw denied();
    const review = await tokenReview(config, jwt, role.audience);
    if (!review) throw denied();
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(review.username);
    if (!m) throw denied();
    const [, namespace, name] = m as unknown as [string, string, string];
    if (!globMatch(role.names, name) || !globMatch(role.namespaces, namespace)) throw denied();
    return {
      auth: issue(role.policies, role.ttlSeconds, {
        role: roleName,
        service_account_name: name,
        service_account_namespace: namespace,
        service_account_uid: review.uid,
      }),
    };
  }

  /** Transit routes under a mount. */
  async function transit(method: string, mount: string, rest: string, body: Record<string, unknown>) {
    const keys = state.keys.get(mount) as Map<string, TransitKey>;
    if (rest === "wrapping_key" && method === "GET") {
      const { publicKey } = await theWrappingKey();
      return { data: { public_key: publicKey.export({ type: "spki", format: "pem" }).toString() } };
    }
    const keyPath = /^keys\/([^/]+)$/.exec(rest);
    if (keyPath) {
      const m = keyPath;
      const name = m[1] as string;
      if (method === "GET") {
        const key = keys.get(name);
        if (!key) throw notFound();
        return { data: describeKey(name, key) };
      }
      if (method === "POST" || method === "PUT") return createKey(keys, name, body);
      throw new VaultError(405, []);
    }
    const importPath = /^keys\/([^/]+)\/(import|import_version)$/.exec(rest);
    if (importPath && (method === "POST" || method === "PUT")) {
      const name = importPath[1] as string;
      return importPath[2] === "import" ? importKey(keys, name, body) : importVersion(keys, name, body);
    }
    const signPath = /^sign\/([^/]+)(?:\/([^/]+))?$/.exec(rest);
    if (signPath && (method === "POST" || method === "PUT")) {
      const m = signPath;
      return signWith(keys, m[1] as string, m[2], body);
    }
    throw notFound();
  }

  const fake: ContractVault = {
    address: "",
    rootToken,
    log,
    failNext(status, times = 1) {
      for (let i = 0; i < times; i++) failures.push(status);
    },
    async stop() {
      if (!server.listening) return;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    async restart() {
      await fake.stop();
      state = freshState(rootToken);
      failures.length = 0;
      await listen(server, port);
    },
    async close() {
      await fake.stop();
    },
  };
  await listen(server, 0);
  const port = (server.address() as AddressInfo).port;
  fake.address = `http://127.0.0.1:${port}`;
  return fake;
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function freshState(rootToken: string): State {
  return {
    mounts: new Map(),
    auths: new Map(),
    keys: new Map(),
    kubeConfigs: new Map(),
    kubeRoles: new Map(),
    policies: new Map(),
    tokens: new Map([[rootToken, { policies: ["root"], root: true, expiresAtMs: Infinity, meta: {} }]]),
  };
}

function failureText(status: number): string {
  if (status === 503) return "Vault is sealed";
  if (status === 429) return "request path rate limited";
  if (status === 412) return "required index state not present";
  if (status === 403) return "permission denied";
  return "internal error";
}

/** A JSON object body, or none; anything else is Vault's "failed to parse JSON input". */
function parseBody(raw: string, method: string): Record<string, unknown> {
  if (raw.trim() === "") return {};
  if (method === "GET" || method === "HEAD") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw bad(`failed to parse JSON input: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw bad("failed to parse JSON input: not a JSON object");
  }
  return parsed as Record<string, unknown>;
}

type FieldType = "string" | "int" | "bool" | "strings" | "duration" | "map";

/**
 * The body's fields converted as Vault's framework converts them (TypeString, TypeInt,
 * TypeBool, TypeCommaStringSlice: an array or a comma-separated string, TypeDurationSecond:
 * seconds or a Go duration such as "10m"); an unknown field is refused (Vault only warns).
 */
function check(body: Record<string, unknown>, schema: Record<string, FieldType>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(body)) {
    const type = schema[field];
    if (!type) throw bad(`unknown field "${field}" (this contract server refuses what Vault would ignore)`);
    const wrong = () =>
      bad(`error converting input ${JSON.stringify(value)} for field "${field}": expected ${type}`);
    switch (type) {
      case "string":
        if (typeof value !== "string") throw wrong();
        out[field] = value;
        break;
      case "int":
        if (typeof value === "number" && Number.isInteger(value)) out[field] = value;
        else if (typeof value === "string" && /^-?[0-9]+$/.test(value)) out[field] = Number(value);
        else throw wrong();
        break;
      case "bool":
        if (typeof value === "boolean") out[field] = value;
        else if (value === "true" || value === "false") out[field] = value === "true";
        else throw wrong();
        break;
      case "strings":
        if (Array.isArray(value) && value.every((v) => typeof v === "string")) out[field] = value;
        else if (typeof value === "string")
          out[field] = value === "" ? [] : value.split(",").map((s) => s.trim());
        else throw wrong();
        break;
      case "duration": {
        const seconds = durationSeconds(value);
        if (seconds === undefined) throw wrong();
        out[field] = seconds;
        break;
      }
      case "map":
        if (value === null || typeof value !== "object" || Array.isArray(value)) throw wrong();
        out[field] = value;
        break;
    }
  }
  return out;
}

function durationSeconds(value: unknown): number | undefined {
  if (typeof value === "number" && Number.isInteger(value) && value >= 0) return value;
  if (typeof value !== "string") return undefined;
  if (/^[0-9]+$/.test(value)) return Number(value);
  const parts = [...value.matchAll(/([0-9]+)(h|m|s)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== value) return undefined;
  const unit = { h: 3600, m: 60, s: 1 } as const;
  return parts.reduce((total, p) => total + Number(p[1]) * unit[p[2] as "h" | "m" | "s"], 0);
}

/**
 * Just enough HCL for ACL policies: `path "<glob>" { capabilities = ["read", ...] }` blocks
 * (and `#`/`//` comments). Anything else in the text is a parse error, as it would be in Vault
 * for malformed HCL (Vault accepts more keys inside a block; this server does not).
 */
export function parsePolicy(text: string): PolicyRule[] {
  const stripped = text.replace(/(^|\n)\s*(#|\/\/)[^\n]*/g, "$1");
  const rules: PolicyRule[] = [];
  const block = /path\s+"([^"]+)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]\s*\}/g;
  let last = 0;
  for (const m of stripped.matchAll(block)) {
    if (stripped.slice(last, m.index).trim() !== "") throw bad("failed to parse policy: unexpected text");
    last = (m.index ?? 0) + m[0].length;
    const caps = new Set<Capability>();
    for (const item of (m[2] as string)
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "")) {
      const c = /^"([a-z]+)"$/.exec(item)?.[1];
      if (!c || !capabilities.has(c)) throw bad(`failed to parse policy: invalid capability ${item}`);
      caps.add(c as Capability);
    }
    rules.push({ path: (m[1] as string).replace(/^\//, ""), capabilities: caps });
  }
  if (stripped.slice(last).trim() !== "") throw bad("failed to parse policy: unexpected text");
  if (rules.length === 0) throw bad("failed to parse policy: no path blocks");
  return rules;
}

/**
 * How well a policy path matches a request path: -1 for no match; exact paths outrank globs,
 * longer patterns outrank shorter. `+` is one path segment; a trailing `*` is any suffix.
 */
export function matchScore(pattern: string, path: string): number {
  if (!pattern.includes("+") && !pattern.endsWith("*")) return pattern === path ? 1_000_000 : -1;
  const glob = pattern.endsWith("*");
  const body = glob ? pattern.slice(0, -1) : pattern;
  const re = body
    .split("+")
    .map((s) => s.replace(/[.*?^${}()|[\]\\]/g, "\\$&"))
    .join("[^/]+");
  return new RegExp(`^${re}${glob ? ".*" : ""}$`).test(path) ? pattern.length : -1;
}

/** Vault's bound names/namespaces: a list with `*` meaning any, and `*` globs inside entries. */
function globMatch(list: string[], value: string): boolean {
  return list.some((item) => {
    if (item === "*") return true;
    const re = item.split("*").map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    return new RegExp(`^${re.join(".*")}$`).test(value);
  });
}

function createPublicKeyOfCert(pem: string): void {
  if (!/-----BEGIN CERTIFICATE-----/.test(pem)) throw new Error("not a certificate");
}

/**
 * A real TokenReview on the configured API server, authenticated with the reviewer JWT (or the
 * client's own JWT when none is configured), trusting the configured CA. Undefined when the
 * review does not authenticate the token (or the API server refuses the review).
 */
function tokenReview(
  config: KubernetesConfig,
  jwt: string,
  audience: string | undefined,
): Promise<{ username: string; uid: string } | undefined> {
  const url = new URL(`${config.kubernetesHost}/apis/authentication.k8s.io/v1/tokenreviews`);
  const payload = JSON.stringify({
    apiVersion: "authentication.k8s.io/v1",
    kind: "TokenReview",
    spec: { token: jwt, ...(audience ? { audiences: [audience] } : {}) },
  });
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method: "POST",
        headers: {
          authorization: `Bearer ${config.reviewerJwt ?? jwt}`,
          "content-type": "application/json",
          accept: "application/json",
        },
        ...(config.caCert ? { ca: config.caCert } : {}),
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          if (res.statusCode !== 201 && res.statusCode !== 200) return resolve(undefined);
          try {
            const status = (
              JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
                status?: {
                  authenticated?: boolean;
                  audiences?: string[];
                  user?: { username?: string; uid?: string };
                };
              }
            ).status;
            if (!status?.authenticated || typeof status.user?.username !== "string")
              return resolve(undefined);
            if (audience && !(status.audiences ?? []).includes(audience)) return resolve(undefined);
            resolve({ username: status.user.username, uid: status.user.uid ?? "" });
          } catch {
            resolve(undefined);
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error("TokenReview timed out")));
    req.on("error", (err) => reject(new VaultError(500, [`TokenReview failed: ${err.message}`])));
    req.end(payload);
  });
}

const rsaTypes: Record<string, number> = { "rsa-2048": 2048, "rsa-3072": 3072, "rsa-4096": 4096 };
const symmetricTypes = new Set(["aes128-gcm96", "aes256-gcm96", "chacha20-poly1305", "hmac"]);
const createTypes = new Set([...Object.keys(rsaTypes), ...symmetricTypes, "ecdsa-p256", "ed25519"]);
const hashes: Record<string, string> = {
  sha1: "sha1",
  "sha2-224": "sha224",
  "sha2-256": "sha256",
  "sha2-384": "sha384",
  "sha2-512": "sha512",
};
const importHashes: Record<string, string> = {
  SHA1: "sha1",
  SHA224: "sha224",
  SHA256: "sha256",
  SHA384: "sha384",
  SHA512: "sha512",
};

function now(): string {
  return new Date().toISOString();
}

/** https://developer.hashicorp.com/vault/api-docs/secret/transit#create-key */
function createKey(keys: Map<string, TransitKey>, name: string, body: Record<string, unknown>) {
  const f = check(body, {
    type: "string",
    convergent_encryption: "bool",
    derived: "bool",
    exportable: "bool",
    allow_plaintext_backup: "bool",
    auto_rotate_period: "duration",
    key_size: "int",
    managed_key_name: "string",
    managed_key_id: "string",
    context: "string",
  });
  const type = (f.type as string | undefined) ?? "aes256-gcm96";
  if (!createTypes.has(type)) throw bad(`unknown key type: ${type}`);
  // Creating a key that exists is a no-op in Vault (the key is kept, whatever the type).
  if (keys.has(name)) return undefined;
  const version: KeyVersion = { creationTime: now() };
  const bits = rsaTypes[type];
  if (bits) Object.assign(version, generateKeyPairSync("rsa", { modulusLength: bits }));
  else if (type === "ecdsa-p256") Object.assign(version, generateKeyPairSync("ec", { namedCurve: "P-256" }));
  else if (type === "ed25519") Object.assign(version, generateKeyPairSync("ed25519"));
  keys.set(name, { type, imported: false, versions: new Map([[1, version]]), latest: 1 });
  return undefined;
}

/** https://developer.hashicorp.com/vault/api-docs/secret/transit#read-key */
function describeKey(name: string, key: TransitKey) {
  const versions: Record<string, unknown> = {};
  for (const [n, v] of key.versions) {
    if (!v.publicKey) {
      versions[String(n)] = Math.floor(Date.parse(v.creationTime) / 1000);
      continue;
    }
    const public_key =
      key.type === "ed25519"
        ? v.publicKey.export({ format: "der", type: "spki" }).subarray(-32).toString("base64")
        : v.publicKey.export({ type: "spki", format: "pem" }).toString();
    versions[String(n)] = {
      name: key.type === "ecdsa-p256" ? "P-256" : key.type,
      public_key,
      creation_time: v.creationTime,
    };
  }
  const signs = !symmetricTypes.has(key.type);
  return {
    name,
    type: key.type,
    keys: versions,
    latest_version: key.latest,
    min_available_version: 0,
    min_decryption_version: 1,
    min_encryption_version: 0,
    deletion_allowed: false,
    derived: false,
    exportable: false,
    allow_plaintext_backup: false,
    imported_key: key.imported,
    supports_encryption: !signs || key.type.startsWith("rsa-"),
    supports_decryption: !signs || key.type.startsWith("rsa-"),
    supports_derivation: !signs,
    supports_signing: signs,
    auto_rotate_period: 0,
  };
}

/** Unwraps a BYOK envelope into the private key it carries. */
async function unwrap(ciphertext: unknown, hashFunction: unknown): Promise<KeyObject> {
  if (typeof ciphertext !== "string" || ciphertext === "") throw bad("missing ciphertext to import");
  const oaepHash = importHashes[(hashFunction as string | undefined) ?? "SHA256"];
  if (!oaepHash) throw bad(`unsupported hash function: ${String(hashFunction)}`);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(ciphertext)) throw bad("error decoding ciphertext: illegal base64 data");
  const blob = Buffer.from(ciphertext, "base64");
  const { privateKey } = await theWrappingKey();
  // The wrapping key is RSA-4096: its OAEP ciphertext is the first 512 bytes.
  if (blob.length <= 512) throw bad("provided ciphertext is too short");
  let aesKey: Buffer;
  try {
    aesKey = privateDecrypt(
      { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash },
      blob.subarray(0, 512),
    );
  } catch {
    throw bad("failed to decrypt ephemeral AES key: crypto/rsa: decryption error");
  }
  if (aesKey.length !== 32) throw bad("failed to decrypt ephemeral AES key: not an AES-256 key");
  let der: Buffer;
  try {
    const kwp = createDecipheriv("id-aes256-wrap-pad", aesKey, Buffer.from("A65959A6", "hex"));
    der = Buffer.concat([kwp.update(blob.subarray(512)), kwp.final()]);
  } catch {
    throw bad("failed to unwrap target key: integrity check failed");
  }
  try {
    return createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  } catch {
    throw bad("error parsing target key: x509: failed to parse private key");
  }
}

function rsaOfType(key: KeyObject, type: string): KeyObject {
  const bits = rsaTypes[type];
  if (key.asymmetricKeyType !== "rsa" || key.asymmetricKeyDetails?.modulusLength !== bits) {
    throw bad(`provided key does not match the key type ${type}`);
  }
  return key;
}

/** https://developer.hashicorp.com/vault/api-docs/secret/transit#import-key */
async function importKey(keys: Map<string, TransitKey>, name: string, body: Record<string, unknown>) {
  const f = check(body, {
    ciphertext: "string",
    public_key: "string",
    hash_function: "string",
    type: "string",
    allow_rotation: "bool",
    derived: "bool",
    context: "string",
    exportable: "bool",
    allow_plaintext_backup: "bool",
    auto_rotate_period: "duration",
  });
  if (keys.has(name)) {
    throw bad(
      "the import path cannot be used with an existing key; use import-version to rotate an existing imported key",
    );
  }
  const type = (f.type as string | undefined) ?? "aes256-gcm96";
  if (!rsaTypes[type]) throw bad(`key type ${type} cannot be imported by this contract server (RSA only)`);
  if (f.public_key !== undefined) throw bad("public key import is not supported by this contract server");
  const privateKey = rsaOfType(await unwrap(f.ciphertext, f.hash_function), type);
  keys.set(name, {
    type,
    imported: true,
    versions: new Map([[1, { privateKey, publicKey: createPublicKey(privateKey), creationTime: now() }]]),
    latest: 1,
  });
  return undefined;
}

/** https://developer.hashicorp.com/vault/api-docs/secret/transit#import-key-version */
async function importVersion(keys: Map<string, TransitKey>, name: string, body: Record<string, unknown>) {
  const f = check(body, {
    ciphertext: "string",
    public_key: "string",
    hash_function: "string",
    version: "int",
  });
  const key = keys.get(name);
  if (!key) throw bad("cannot import key version: key not found");
  if (!key.imported) throw bad("cannot import key version into a key that was not imported");
  if (f.public_key !== undefined) throw bad("public key import is not supported by this contract server");
  if (f.version !== undefined)
    throw bad("importing a private key into an existing version is not supported by this contract server");
  const privateKey = rsaOfType(await unwrap(f.ciphertext, f.hash_function), key.type);
  key.latest += 1;
  key.versions.set(key.latest, { privateKey, publicKey: createPublicKey(privateKey), creationTime: now() });
  return undefined;
}

/** https://developer.hashicorp.com/vault/api-docs/secret/transit#sign-data */
function signWith(
  keys: Map<string, TransitKey>,
  name: string,
  urlHash: string | undefined,
  body: Record<string, unknown>,
) {
  const f = check(body, {
    input: "string",
    key_version: "int",
    hash_algorithm: "string",
    algorithm: "string",
    signature_algorithm: "string",
    prehashed: "bool",
    context: "string",
    marshaling_algorithm: "string",
    salt_length: "string",
  });
  const hashName =
    urlHash ?? (f.hash_algorithm as string | undefined) ?? (f.algorithm as string | undefined) ?? "sha2-256";
  const hash = hashes[hashName];
  if (!hash) throw bad(`unsupported hash algorithm ${hashName}`);
  const key = keys.get(name);
  // Guess (Vault's path_sign.go): the text for signing with a key that does not exist.
  if (!key) throw bad("signing key not found");
  if (symmetricTypes.has(key.type)) throw bad(`key type ${key.type} does not support signing`);
  const asked = (f.key_version as number | undefined) ?? 0;
  // Guess (Vault's keysutil): the texts for a version it does not have.
  if (asked < 0) throw bad("requested version for signing is negative");
  if (asked > key.latest) throw bad("requested version for signing is higher than the latest key version");
  const version = asked === 0 ? key.latest : asked;
  const privateKey = key.versions.get(version)?.privateKey;
  if (!privateKey) throw bad("requested version for signing is not available");
  if (typeof f.input !== "string") throw bad("missing input to process");
  if (!/^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(f.input)) {
    throw bad("unable to decode input as base64: illegal base64 data");
  }
  const input = Buffer.from(f.input, "base64");
  if (f.prehashed) throw bad("prehashed input is not supported by this contract server");
  let signature: Buffer;
  if (key.type.startsWith("rsa-")) {
    // RSA's default signature_algorithm is pss.
    const algorithm = (f.signature_algorithm as string | undefined) ?? "pss";
    if (algorithm !== "pss" && algorithm !== "pkcs1v15")
      throw bad(`unsupported rsa signature algorithm ${algorithm}`);
    signature = cryptoSign(hash, input, {
      key: privateKey,
      padding: algorithm === "pss" ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING,
      ...(algorithm === "pss" ? { saltLength: constants.RSA_PSS_SALTLEN_MAX_SIGN } : {}),
    });
  } else if (key.type === "ed25519") {
    signature = cryptoSign(null, input, privateKey);
  } else {
    signature = cryptoSign(hash, input, { key: privateKey, dsaEncoding: "der" });
  }
  return { data: { signature: `vault:v${version}:${signature.toString("base64")}`, key_version: version } };
}
