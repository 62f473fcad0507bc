import type { SecretFormat, SecretTarget } from "../api/githubapptoken.ts";
import { renderTemplate, TemplateError } from "./template.ts";

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
  const { token, host } = ctx;
  const auth = `${gitUsername}:${encodeURIComponent(token)}`;
  switch (target.format) {
    case "token":
      return { type: "Opaque", data: { [target.key ?? "token"]: token } };
    case "basicAuth":
      return { type: "kubernetes.io/basic-auth", data: { username: gitUsername, password: token } };
    case "argocdRepository":
    case "argocdRepoCreds": {
      const url = target.url ?? defaultArgoUrl(target.format, ctx);
      const secretType = target.format === "argocdRepository" ? "repository" : "repo-creds";
      return {
        type: "Opaque",
        labels: { "argocd.argoproj.io/secret-type": secretType },
        data: { type: "git", url, username: gitUsername, password: token },
      };
    }
    case "gitCredentials":
      return { type: "Opaque", data: { [target.key ?? ".git-credentials"]: `https://${auth}@${host}\n` } };
    case "gitconfig": {
      const base = withSlash(target.url ?? `https://${host}/`);
      const authed = base.replace(/^https:\/\//, `https://${auth}@`);
      return {
        type: "Opaque",
        data: { [target.key ?? ".gitconfig"]: `[url "${authed}"]\n\tinsteadOf = ${base}\n` },
      };
    }
    case "netrc":
      return {
        type: "Opaque",
        // netrc matches a machine by host name only, never with a port.
        data: {
          [target.key ?? ".netrc"]: `machine ${hostname(host)}\nlogin ${gitUsername}\npassword ${token}\n`,
        },
      };
    case "envFile":
      return {
        type: "Opaque",
        data: { [target.key ?? ".env"]: `GITHUB_TOKEN=${token}\nGH_TOKEN=${token}\n` },
      };
    case "template": {
      const values = {
        token,
        username: gitUsername,
        host,
        owner: ctx.owner ?? "",
        expiresAt: ctx.expiresAt,
        apiUrl: ctx.apiUrl,
      };
      const data: Record<string, string> = {};
      for (const [key, source] of Object.entries(target.template?.data ?? {})) {
        try {
          data[key] = renderTemplate(source, values);
        } catch (err) {
          if (err instanceof TemplateError)
            throw new OutputError(`template for key "${key}" of Secret "${target.name}": ${err.message}`);
          throw err;
        }
      }
      return { type: "Opaque", data };
    }
    case "dockerConfigJson": {
      const registry = target.url ? new URL(target.url).host : "ghcr.io";
      const basic = Buffer.from(`${gitUsername}:${token}`).toString("base64");
      const config = { auths: { [registry]: { username: gitUsername, password: token, auth: basic } } };
      return {
        type: "kubernetes.io/dockerconfigjson",
        data: { ".dockerconfigjson": JSON.stringify(config) },
      };
    }
  }
}

function defaultArgoUrl(format: "argocdRepository" | "argocdRepoCreds", ctx: OutputContext): string {
  if (!ctx.owner)
    throw new OutputError(`format ${format} needs url: the installation's owner is not known yet`);
  if (format === "argocdRepoCreds") return `https://${ctx.host}/${ctx.owner}`;
  if (ctx.repositories.length !== 1) {
    throw new OutputError("format argocdRepository needs url unless exactly one repository is requested");
  }
  return `https://${ctx.host}/${ctx.owner}/${ctx.repositories[0]}.git`;
}

function hostname(host: string): string {
  return host.replace(/:\d+$/, "");
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
      return match(data[key ?? ".git-credentials"], /^https:\/\/x-access-token:([^@\s]+)@/m);
    case "gitconfig":
      return match(data[key ?? ".gitconfig"], /x-access-token:([^@\s]+)@/);
    case "netrc":
      return match(data[key ?? ".netrc"], /^password (\S+)$/m);
    case "envFile":
      return match(data[key ?? ".env"], /^GITHUB_TOKEN=(\S+)$/m);
    case "dockerConfigJson":
      return match(data[".dockerconfigjson"], /"password":"([^"]+)"/);
    case "template":
      // Verified against the token-hash annotation by the caller.
      return match(Object.values(data).join("\n"), /(ghs_[^\s"'@:/\\,;]{20,})/);
  }
}

function match(text: string | undefined, re: RegExp): string | undefined {
  const m = text?.match(re);
  return m?.[1] ? decodeURIComponent(m[1]) : undefined;
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
