import {
  formatSecretType,
  type SecretFormat,
  type SecretTarget,
  secretTargetProblems,
} from "../api/githubapptoken.ts";
import { urlProblem } from "../api/meta.ts";
import { maxTemplateOutput, renderTemplate, TemplateError } from "./template.ts";

/** Labels and annotations ghat puts on every Secret it manages. */
export const labels = {
  managedBy: "app.kubernetes.io/managed-by",
  token: "ghat.dev/token",
} as const;
export const annotations = {
  expiresAt: "ghat.dev/expires-at",
  refreshAt: "ghat.dev/refresh-at",
  scopeHash: "ghat.dev/scope-hash",
  format: "ghat.dev/format",
  tokenHash: "ghat.dev/token-hash",
} as const;
export const managedByValue = "ghat";

/** The username GitHub expects with an installation token over HTTPS. */
export const gitUsername = "x-access-token";

export interface OutputContext {
  token: string;
  /** Web host of the GitHub instance: github.com, or the Enterprise Server host. */
  host: string;
  /** Account (org or user) the installation belongs to, when known. */
  owner: string | undefined;
  /** Repository names requested, when any (for a default Argo CD repository URL). */
  repositories: readonly string[];
  /** The GitHub API base URL (templates). */
  apiUrl: string;
  /**
   * The App's CA bundle (Enterprise Server on a private CA): basicAuth Secrets carry it as
   * `ca.crt`, where Flux's GitRepository reads the CA of its secretRef.
   */
  caBundle?: string | undefined;
  tokenName: string;
  expiresAt: string;
  refreshAt: string;
  scopeHash: string;
}

export interface DesiredSecret {
  name: string;
  type: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Plain-text values; the kube layer base64-encodes them into `data`. */
  data: Record<string, string>;
}

/** Thrown for a target that cannot be rendered (e.g. no URL for an Argo CD repository). */
export class OutputError extends Error {
  override name = "OutputError";
}

/**
 * The Secret a target should hold for a token: deterministic (same input, same output;
 * no timestamps besides the token's own), so re-applying unchanged state writes nothing.
 */
export function desiredSecret(target: SecretTarget, ctx: OutputContext): DesiredSecret {
  // Admission checks all of this too; a spec stored before those rules, or an edit that
  // skipped them, must still never reach a Secret.
  const problems = secretTargetProblems(target);
  if (target.url !== undefined) {
    const problem = urlProblem(target.url, "https");
    if (problem) problems.push(`url ${problem}`);
  }
  // A Secret holds bytes: a lone surrogate would be written as U+FFFD, another token.
  if (!ctx.token.isWellFormed()) problems.push("the token is not well-formed Unicode");
  if (problems.length > 0) throw new OutputError(`Secret "${target.name}": ${problems.join("; ")}`);
  const shape = render(target, ctx);
  return {
    name: target.name,
    type: target.type ?? shape.type,
    labels: {
      ...target.labels,
      ...shape.labels,
      [labels.managedBy]: managedByValue,
      [labels.token]: ctx.tokenName,
    },
    annotations: {
      ...target.annotations,
      [annotations.expiresAt]: ctx.expiresAt,
      [annotations.refreshAt]: ctx.refreshAt,
      [annotations.scopeHash]: ctx.scopeHash,
      [annotations.format]: target.format,
    },
    data: shape.data,
  };
}

interface Shape {
  type: string;
  labels?: Record<string, string>;
  data: Record<string, string>;
}

function render(target: SecretTarget, ctx: OutputContext): Shape {
  const { token } = ctx;
  const type = formatSecretType[target.format];
  switch (target.format) {
    case "token":
      return { type, data: { [target.key ?? "token"]: token } };
    case "basicAuth":
      return {
        type,
        data: { username: gitUsername, password: token, ...(ctx.caBundle ? { "ca.crt": ctx.caBundle } : {}) },
      };
    case "argocdRepository":
    case "argocdRepoCreds": {
      const url = target.url ?? defaultArgoUrl(target.format, ctx);
      const secretType = target.format === "argocdRepository" ? "repository" : "repo-creds";
      return {
        type,
        labels: { "argocd.argoproj.io/secret-type": secretType },
        data: { type: "git", url, username: gitUsername, password: token },
      };
    }
    case "gitCredentials":
      return { type, data: { [target.key ?? ".git-credentials"]: gitCredentials(ctx) } };
    case "gitconfig":
      return { type, data: { [target.key ?? ".gitconfig"]: gitconfig(target.url, ctx) } };
    case "netrc":
      return { type, data: { [target.key ?? ".netrc"]: netrc(ctx) } };
    case "envFile":
      return { type, data: { [target.key ?? ".env"]: envFile(ctx) } };
    case "template":
      return { type, data: renderTemplates(target, ctx) };
    case "dockerConfigJson":
      return { type, data: { ".dockerconfigjson": dockerConfigJson(target.url, ctx) } };
  }
}

/** True for ASCII and C1 control characters and the Unicode line and paragraph separators. */
export function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c <= 0x1f || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029) return true;
  }
  return false;
}
/** A host name or bracketed IP literal with an optional port, as in a URL's authority. */
const hostPattern = /^([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$/;

function checkedHost(host: string): string {
  if (!hostPattern.test(host) || !parsesAsHost(host))
    throw new OutputError(`the GitHub host ${JSON.stringify(host)} is not a host name`);
  return host;
}

/** What a URL parser (git's, curl's, Node's) accepts: "github.com.0" is an invalid IPv4 address to it. */
function parsesAsHost(host: string): boolean {
  try {
    new URL(`https://${host}/`);
    return true;
  } catch {
    return false;
  }
}

/** encodeURIComponent, as an OutputError for strings it cannot encode (lone surrogates). */
function percentEncoded(what: string, value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    throw new OutputError(`the ${what} cannot be percent-encoded`);
  }
}

/** One `https://user:password@host` line; user and password percent-encoded. */
function gitCredentials(ctx: OutputContext): string {
  const user = percentEncoded("username", gitUsername);
  const password = percentEncoded("token", ctx.token);
  return `https://${user}:${password}@${checkedHost(ctx.host)}\n`;
}

/**
 * A git config value or subsection name in double quotes: `"` and `\` escaped, control
 * characters refused (git reads no escape for most of them, and a newline ends the line).
 * @see https://git-scm.com/docs/git-config#_syntax
 */
function gitQuoted(what: string, value: string): string {
  if (hasControlCharacter(value)) throw new OutputError(`the ${what} contains a control character`);
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** `[url "https://user:token@host/…/"] insteadOf = "https://host/…/"`. */
function gitconfig(url: string | undefined, ctx: OutputContext): string {
  const base = withSlash(url ?? `https://${checkedHost(ctx.host)}/`);
  const problem = urlProblem(base, "https");
  if (problem) throw new OutputError(`the gitconfig URL ${problem}`);
  const auth = `${percentEncoded("username", gitUsername)}:${percentEncoded("token", ctx.token)}`;
  const authed = base.replace(/^https:\/\//, `https://${auth}@`);
  return `[url ${gitQuoted("URL", authed)}]\n\tinsteadOf = ${gitQuoted("URL", base)}\n`;
}

/** netrc has no quoting: a field with whitespace or quotes would be read as several tokens. */
function netrcField(what: string, value: string): string {
  if (value === "" || /[\s"'\\]/.test(value) || hasControlCharacter(value)) {
    throw new OutputError(
      `the ${what} cannot be written to a netrc file (empty, whitespace, quotes or control characters)`,
    );
  }
  return value;
}

function netrc(ctx: OutputContext): string {
  // netrc matches a machine by host name only, never with a port.
  const machine = netrcField("host", hostname(checkedHost(ctx.host)));
  return `machine ${machine}\nlogin ${netrcField("username", gitUsername)}\npassword ${netrcField("token", ctx.token)}\n`;
}

/**
 * KEY='value' lines: single quotes keep the value literal for shells, dotenv and systemd;
 * a value with a quote or a control character (a newline would start a new variable) is refused.
 */
function envValue(value: string): string {
  if (value.includes("'") || hasControlCharacter(value)) {
    throw new OutputError("the token cannot be written to an env file (quotes or control characters)");
  }
  return `'${value}'`;
}

function envFile(ctx: OutputContext): string {
  const value = envValue(ctx.token);
  return `GITHUB_TOKEN=${value}\nGH_TOKEN=${value}\n`;
}

/** Built with JSON.stringify only: no value can add a key. */
function dockerConfigJson(url: string | undefined, ctx: OutputContext): string {
  const registry = url ? new URL(url).host : "ghcr.io";
  const basic = Buffer.from(`${gitUsername}:${ctx.token}`).toString("base64");
  const config = { auths: { [registry]: { username: gitUsername, password: ctx.token, auth: basic } } };
  return JSON.stringify(config);
}

/** Every key of a template output; together at most maxTemplateOutput bytes. */
function renderTemplates(target: SecretTarget, ctx: OutputContext): Record<string, string> {
  const values = {
    token: ctx.token,
    username: gitUsername,
    host: ctx.host,
    owner: ctx.owner ?? "",
    expiresAt: ctx.expiresAt,
    apiUrl: ctx.apiUrl,
  };
  const data: Record<string, string> = {};
  let budget = maxTemplateOutput;
  for (const [key, source] of Object.entries(target.template?.data ?? {})) {
    try {
      data[key] = renderTemplate(source, values, { maxOutput: budget });
    } catch (err) {
      if (err instanceof TemplateError) {
        const total = budget < maxTemplateOutput ? " (all keys together)" : "";
        throw new OutputError(`template for key "${key}" of Secret "${target.name}": ${err.message}${total}`);
      }
      throw err;
    }
    budget -= Buffer.byteLength(data[key] ?? "");
  }
  return data;
}

function defaultArgoUrl(format: "argocdRepository" | "argocdRepoCreds", ctx: OutputContext): string {
  if (!ctx.owner)
    throw new OutputError(`format ${format} needs url: the installation's owner is not known yet`);
  let url: string;
  if (format === "argocdRepoCreds") url = `https://${ctx.host}/${ctx.owner}`;
  else if (ctx.repositories.length !== 1) {
    throw new OutputError("format argocdRepository needs url unless exactly one repository is requested");
  } else url = `https://${ctx.host}/${ctx.owner}/${ctx.repositories[0]}.git`;
  const problem = urlProblem(url, "https");
  if (problem) throw new OutputError(`format ${format}: the default url ${problem}; set url`);
  return url;
}

function hostname(host: string): string {
  return host.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
}

function withSlash(url: string): string {
  return url.endsWith("/") ? url : `${url}/`;
}

/** Reads the token back out of a Secret written in `format` (restart safety). */
export function extractToken(
  format: SecretFormat,
  key: string | undefined,
  data: Record<string, string>,
): string | undefined {
  switch (format) {
    case "token":
      return data[key ?? "token"] || undefined;
    case "basicAuth":
    case "argocdRepository":
    case "argocdRepoCreds":
      return data.password || undefined;
    case "gitCredentials":
      return decoded(match(data[key ?? ".git-credentials"], /^https:\/\/x-access-token:([^@\s]+)@/m));
    case "gitconfig":
      return decoded(match(data[key ?? ".gitconfig"], /x-access-token:([^@\s"]+)@/));
    case "netrc":
      return match(data[key ?? ".netrc"], /^password (\S+)$/m);
    case "envFile":
      // Quoted since the values were hardened; unquoted in Secrets written before.
      return (
        match(data[key ?? ".env"], /^GITHUB_TOKEN='([^'\n]+)'$/m) ??
        match(data[key ?? ".env"], /^GITHUB_TOKEN=([^'\s]\S*)$/m)
      );
    case "dockerConfigJson":
      return dockerPassword(data[".dockerconfigjson"]);
    case "template":
      // Verified against the token-hash annotation by the caller.
      return match(Object.values(data).join("\n"), /(ghs_[^\s"'@:/\\,;]{20,})/);
  }
}

function match(text: string | undefined, re: RegExp): string | undefined {
  return text?.match(re)?.[1] || undefined;
}

/** Percent-decodes a value read from a URL; undefined when it does not decode. */
function decoded(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

function dockerPassword(text: string | undefined): string | undefined {
  if (!text) return undefined;
  try {
    const config = JSON.parse(text) as { auths?: Record<string, { password?: unknown }> };
    const password = Object.values(config.auths ?? {})[0]?.password;
    return typeof password === "string" && password !== "" ? password : undefined;
  } catch {
    return undefined;
  }
}

/** Web host for git URLs from an API base URL (api.github.com → github.com; GHES keeps its host). */
export function webHost(baseUrl: string): string {
  const host = new URL(baseUrl).host;
  return host === "api.github.com" ? "github.com" : host;
}

/** A message to surface for formats with caveats, or undefined. */
export function formatWarning(format: SecretFormat): string | undefined {
  if (format === "dockerConfigJson") {
    return "ghcr.io generally refuses GitHub App installation tokens for private packages; this Secret may not pull them";
  }
  return undefined;
}
