import { describe, expect, it } from "vitest";
import type { SecretFormat, SecretTarget } from "../../../src/api/githubapptoken.ts";
import {
  desiredSecret,
  extractToken,
  type OutputContext,
  OutputError,
  webHost,
} from "../../../src/core/outputs.ts";
import { outputContext } from "./context.ts";

// A stateless-format token: long, with dots and underscores (no length or charset assumptions).
const stateless = `ghs_123456_${"eyJhbGciOiJSUzI1NiJ9"}.${"a".repeat(400)}.${"b_c-d".repeat(20)}`;
const ctx: OutputContext = outputContext(stateless);

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

  it("adds the App's CA bundle as ca.crt to basic-auth Secrets (Flux reads it there), and nowhere else", () => {
    const caBundle = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    expect(desiredSecret({ name: "t", format: "basicAuth" }, { ...ctx, caBundle }).data).toEqual({
      username: "x-access-token",
      password: stateless,
      "ca.crt": caBundle,
    });
    expect(desiredSecret({ name: "t", format: "basicAuth" }, ctx).data).not.toHaveProperty("ca.crt");
    expect(desiredSecret({ name: "t", format: "token" }, { ...ctx, caBundle }).data).toEqual({
      token: stateless,
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
        labels: { team: "a", "app.kubernetes.io/name": "bot" },
        annotations: { "ghat.dev/expires-at": "never" },
      },
      ctx,
    );
    expect(s.labels).toMatchObject({ team: "a", "app.kubernetes.io/name": "bot", "ghat.dev/token": "ci" });
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

/** A target as a stored spec may hold it, bypassing the schema's types (admission may not have run). */
const raw = (t: Record<string, unknown>) => ({ name: "t", format: "token", ...t }) as unknown as SecretTarget;
const refused =
  (t: Record<string, unknown>, c: Partial<OutputContext> = {}) =>
  () =>
    desiredSecret(raw(t), { ...ctx, ...c });

describe("url (defense in depth: refused even when admission was skipped)", () => {
  it.each([
    ['https://github.com/acme/"][core]sshCommand=touch /tmp/pwned;[x"', /url must be an https URL/],
    ["https://github.com/acme\n[core]\n\tsshCommand = x", /url must be/],
    ["https://user:pass@github.com/acme", /url must be/],
    ["https://github.com\\@evil.example/", /url must be/],
    ["http://github.com/acme", /url must be an https URL/],
    ["ftp://github.com/acme", /url must be/],
    ["https://github.com/acme'", /url must be/],
    [`https://github.com/${"a".repeat(2048)}`, /longer than 2048/],
  ])("refuses %j", (url, message) => {
    for (const format of ["gitconfig", "argocdRepository", "argocdRepoCreds", "dockerConfigJson"]) {
      expect(refused({ format, url })).toThrow(OutputError);
      expect(refused({ format, url })).toThrow(message);
    }
  });

  it("accepts https URLs with a port, an IP literal, a query and non-ASCII path", () => {
    for (const url of [
      "https://git.example.com:8443/%C3%BCn%C3%AF/",
      "https://[::1]:5000/x",
      "https://example.com/a?b=c#d",
      "https://xn--n3h.example/☃",
    ]) {
      expect(desiredSecret({ name: "t", format: "argocdRepoCreds", url }, ctx).data.url).toBe(url);
    }
  });

  it("refuses a default Argo CD URL built from an owner or repository that would not make a URL", () => {
    expect(refused({ format: "argocdRepoCreds" }, { owner: 'a"b' })).toThrow(/default url must be/);
    expect(refused({ format: "argocdRepository" }, { repositories: ["a b"] })).toThrow(/default url must be/);
  });
});

describe("per-format escaping", () => {
  it("quotes the gitconfig section and value, so # and ; stay part of the URL", () => {
    const s = desiredSecret({ name: "t", format: "gitconfig", url: "https://example.com/a;b#c" }, ctx);
    expect(s.data[".gitconfig"]).toBe(
      `[url "https://x-access-token:${stateless}@example.com/a;b#c/"]\n\tinsteadOf = "https://example.com/a;b#c/"\n`,
    );
  });

  it('escapes " and \\ in gitconfig and refuses control characters', () => {
    const s = desiredSecret({ name: "t", format: "gitconfig" }, { ...ctx, token: 'a"b\\c' });
    // The token is percent-encoded inside the URL, so nothing is left to escape.
    expect(s.data[".gitconfig"]).toContain('x-access-token:a%22b%5Cc@github.com/"]');
    expect(refused({ format: "gitconfig" }, { host: "github.com\n[core]" })).toThrow(/not a host name/);
  });

  it("percent-encodes the git-credentials password", () => {
    const s = desiredSecret({ name: "t", format: "gitCredentials" }, { ...ctx, token: "a@b:c/d\ne" });
    expect(s.data[".git-credentials"]).toBe("https://x-access-token:a%40b%3Ac%2Fd%0Ae@github.com\n");
    expect(extractToken("gitCredentials", undefined, s.data)).toBe("a@b:c/d\ne");
    expect(refused({ format: "gitCredentials" }, { token: "\ud800" })).toThrow(/not well-formed Unicode/);
  });

  it.each(["a b", "a\nmachine evil.example", 'a"b', "a'b", "a\tb", "", "a\u0085b", "a\u00a0b"])(
    "refuses to write the netrc token %j",
    (token) => {
      expect(refused({ format: "netrc" }, { token })).toThrow(/netrc/);
    },
  );

  it("writes netrc for an IPv6 host without brackets or port", () => {
    const s = desiredSecret({ name: "t", format: "netrc" }, { ...ctx, host: "[::1]:8443", token: "tok" });
    expect(s.data[".netrc"]).toBe("machine ::1\nlogin x-access-token\npassword tok\n");
  });

  it("quotes env-file values and refuses quotes and control characters", () => {
    const s = desiredSecret({ name: "t", format: "envFile" }, { ...ctx, token: "a$b`c d" });
    expect(s.data[".env"]).toBe("GITHUB_TOKEN='a$b`c d'\nGH_TOKEN='a$b`c d'\n");
    expect(extractToken("envFile", undefined, s.data)).toBe("a$b`c d");
    for (const token of ["a\nEVIL=1", "a\rb", "a'b", "a\u2028b"]) {
      expect(refused({ format: "envFile" }, { token })).toThrow(/env file/);
    }
  });

  it("reads back an env file written before values were quoted", () => {
    expect(extractToken("envFile", undefined, { ".env": "GITHUB_TOKEN=ghs_x\nGH_TOKEN=ghs_x\n" })).toBe(
      "ghs_x",
    );
  });

  it("builds dockerconfigjson with JSON.stringify, so quotes in the token stay inside the password", () => {
    const token = 'a","auths":{"evil":{}},"x":"';
    const s = desiredSecret({ name: "t", format: "dockerConfigJson" }, { ...ctx, token });
    const parsed = JSON.parse(s.data[".dockerconfigjson"] ?? "") as { auths: Record<string, unknown> };
    expect(Object.keys(parsed.auths)).toEqual(["ghcr.io"]);
    expect(extractToken("dockerConfigJson", undefined, s.data)).toBe(token);
  });

  it("reads a netrc token with a percent sign back as it is", () => {
    const s = desiredSecret({ name: "t", format: "netrc" }, { ...ctx, token: "100%zz" });
    expect(extractToken("netrc", undefined, s.data)).toBe("100%zz");
  });
});

describe("Secret type, labels and data keys (re-checked at render)", () => {
  it.each([
    [{ type: "kubernetes.io/service-account-token" }, /Secret type/],
    [{ type: "bootstrap.kubernetes.io/token" }, /Secret type/],
    [{ type: "kubernetes.io/dockerconfigjson" }, /does not fit format token/],
    [{ labels: { "argocd.argoproj.io/secret-type": "cluster" } }, /set only by the Argo CD formats/],
    [
      {
        format: "argocdRepoCreds",
        url: "https://github.com/acme",
        labels: { "argocd.argoproj.io/secret-type": "cluster" },
      },
      /always "repo-creds"/,
    ],
    [{ labels: { "kubernetes.io/service-account.name": "default" } }, /reserved prefix/],
    [{ labels: { "node-role.kubernetes.io/control-plane": "" } }, /reserved prefix/],
    [{ labels: { "k8s.io/x": "y" } }, /reserved prefix/],
    [{ labels: { "ghat.dev/token": "other" } }, /reserved prefix/],
    [{ labels: { "app.kubernetes.io/managed-by": "someone" } }, /reserved/],
    [{ labels: { team: "x".repeat(64) } }, /not a label value/],
    [{ labels: { "a b": "x" } }, /not a qualified name/],
    [
      { labels: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`l${i}`, "v"])) },
      /at most 16 labels/,
    ],
    [{ key: "a/b" }, /not a Secret data key/],
    [{ key: ".." }, /not a Secret data key/],
    [{ format: "template", template: { data: { "../x": "{{ token }}" } } }, /template key/],
    [
      {
        format: "template",
        template: { data: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "x"])) },
      },
      /at most 32 template keys/,
    ],
  ])("refuses %j", (target, message) => {
    expect(refused(target)).toThrow(OutputError);
    expect(refused(target)).toThrow(message);
  });

  it("lets an Argo CD format carry its own secret-type label value", () => {
    const s = desiredSecret(
      {
        name: "t",
        format: "argocdRepository",
        url: "https://github.com/acme/app.git",
        labels: { "argocd.argoproj.io/secret-type": "repository" },
      },
      ctx,
    );
    expect(s.labels["argocd.argoproj.io/secret-type"]).toBe("repository");
  });

  it("allows the types the formats need", () => {
    expect(
      desiredSecret(
        {
          name: "t",
          format: "argocdRepoCreds",
          url: "https://github.com/acme",
          type: "kubernetes.io/basic-auth",
        },
        ctx,
      ).type,
    ).toBe("kubernetes.io/basic-auth");
    expect(desiredSecret({ name: "t", format: "dockerConfigJson", type: "Opaque" }, ctx).type).toBe("Opaque");
  });
});

describe("template output size", () => {
  it("bounds the rendered size of all keys together", () => {
    const big = { ...ctx, token: "t".repeat(100 * 1024) };
    const data = { a: "{{ token }}", b: "{{ token }}", c: "{{ token }}" };
    expect(() => desiredSecret({ name: "t", format: "template", template: { data } }, big)).toThrow(
      /key "c" of Secret "t": line 1, column 4: .*larger than .*\(all keys together\)/,
    );
    const two = { a: "{{ token }}", b: "{{ token }}" };
    expect(
      Object.keys(desiredSecret({ name: "t", format: "template", template: { data: two } }, big).data),
    ).toEqual(["a", "b"]);
  });
});
