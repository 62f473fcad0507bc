import { describe, expect, it } from "vitest";
import type { SecretFormat } from "../../../src/api/githubapptoken.ts";
import { desiredSecret, extractToken, type OutputContext, webHost } from "../../../src/core/outputs.ts";

// A stateless-format token: long, with dots and underscores (no length or charset assumptions).
const stateless = `ghs_123456_${"eyJhbGciOiJSUzI1NiJ9"}.${"a".repeat(400)}.${"b_c-d".repeat(20)}`;
const ctx: OutputContext = {
  token: stateless,
  host: "github.com",
  owner: "acme",
  repositories: ["app"],
  tokenName: "ci",
  apiUrl: "https://api.github.com",
  expiresAt: "2026-11-24T13:00:00.000Z",
  refreshAt: "2026-11-24T12:40:00.000Z",
  scopeHash: "abc",
};

describe("desiredSecret", () => {
  it("writes a plain Opaque Secret with key token by default", () => {
    const s = desiredSecret({ name: "t", format: "token" }, ctx);
    expect(s).toMatchObject({ type: "Opaque", data: { token: stateless } });
    expect(s.labels).toMatchObject({ "app.kubernetes.io/managed-by": "ghat", "ghat.dev/token": "ci" });
    expect(s.annotations).toMatchObject({
      "ghat.dev/expires-at": ctx.expiresAt,
      "ghat.dev/refresh-at": ctx.refreshAt,
    });
  });

  it("writes Flux's basic-auth shape", () => {
    expect(desiredSecret({ name: "t", format: "basicAuth" }, ctx)).toMatchObject({
      type: "kubernetes.io/basic-auth",
      data: { username: "x-access-token", password: stateless },
    });
  });

  it("writes Argo CD repository and repo-creds Secrets with their label and fields", () => {
    const repo = desiredSecret({ name: "t", format: "argocdRepository" }, ctx);
    expect(repo.labels["argocd.argoproj.io/secret-type"]).toBe("repository");
    expect(repo.data).toEqual({
      type: "git",
      url: "https://github.com/acme/app.git",
      username: "x-access-token",
      password: stateless,
    });
    const creds = desiredSecret({ name: "t", format: "argocdRepoCreds" }, ctx);
    expect(creds.labels["argocd.argoproj.io/secret-type"]).toBe("repo-creds");
    expect(creds.data.url).toBe("https://github.com/acme");
  });

  it("is deterministic: the same input gives the same Secret", () => {
    expect(desiredSecret({ name: "t", format: "gitconfig" }, ctx)).toEqual(
      desiredSecret({ name: "t", format: "gitconfig" }, ctx),
    );
  });

  it("keeps user labels and annotations but never lets them replace ghat's own", () => {
    const s = desiredSecret(
      {
        name: "t",
        format: "token",
        labels: { team: "a", "ghat.dev/token": "other" },
        annotations: { "ghat.dev/expires-at": "never" },
      },
      ctx,
    );
    expect(s.labels).toMatchObject({ team: "a", "ghat.dev/token": "ci" });
    expect(s.annotations["ghat.dev/expires-at"]).toBe(ctx.expiresAt);
  });

  it.each<SecretFormat>([
    "token",
    "basicAuth",
    "argocdRepository",
    "argocdRepoCreds",
    "gitCredentials",
    "gitconfig",
    "netrc",
    "envFile",
    "dockerConfigJson",
  ])("reads the long token back out of format %s", (format) => {
    const s = desiredSecret({ name: "t", format }, ctx);
    expect(extractToken(format, undefined, s.data)).toBe(stateless);
  });
});

describe("template format", () => {
  it("renders each key and reports a bad template with the key and position", () => {
    const s = desiredSecret(
      {
        name: "t",
        format: "template",
        template: { data: { url: "https://{{ username }}:{{ token }}@{{ host }}/{{ owner }}" } },
      },
      ctx,
    );
    expect(s.data.url).toBe(`https://x-access-token:${stateless}@github.com/acme`);
    expect(extractToken("template", undefined, s.data)).toBe(stateless);
    expect(() =>
      desiredSecret({ name: "t", format: "template", template: { data: { k: "{{ nope }}" } } }, ctx),
    ).toThrow(/key "k" of Secret "t": line 1, column 4/);
  });
});

describe("webHost", () => {
  it.each([
    ["https://api.github.com", "github.com"],
    ["https://ghe.corp.example/api/v3", "ghe.corp.example"],
    ["http://127.0.0.1:8080", "127.0.0.1:8080"],
  ])("%s → %s", (url, host) => expect(webHost(url)).toBe(host));
});
