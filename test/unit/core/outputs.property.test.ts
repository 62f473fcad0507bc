import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { SecretTarget } from "../../../src/api/githubapptoken.ts";
import { desiredSecret, type OutputContext, OutputError } from "../../../src/core/outputs.ts";
import { outputContext } from "./context.ts";

/**
 * For any token, host and url, each text format either refuses with an OutputError or
 * produces exactly its expected lines, sections and keys, holding the values unchanged:
 * no value can add a line, a section or a key. Each output is parsed back by a small
 * parser written for the test, independent of the code under test.
 */

const base: OutputContext = outputContext("ghs_x");

/** Characters that matter to one format or another, plus a few ordinary ones. */
const nasty = [
  ..."aZ09._-~",
  ..."\"'\\`$#;=[]{}()@:/?%&+, ",
  "\n",
  "\r",
  "\t",
  "\0",
  "\x7f",
  "\u0085",
  "\u00a0",
  "\u2028",
  "\u2029",
  "\ufeff",
  "☃",
  "\ud800",
];
const hostile = fc.oneof(
  fc.string({ unit: fc.constantFrom(...nasty), maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ maxLength: 40 }),
);
const realistic = fc.stringMatching(/^ghs_[A-Za-z0-9._-]{1,60}$/);
const token = fc.oneof(hostile, realistic);
const host = fc.oneof(
  hostile,
  fc.constantFrom("github.com", "ghe.corp.example", "127.0.0.1:8443", "[::1]:5000", "GHE.example"),
  hostile.map((s) => `github.com${s}`),
);
const url = fc.oneof(
  fc.constant(undefined),
  hostile.map((s) => `https://github.com/${s}`),
  hostile.map((s) => `https://${s}`),
  hostile,
  fc.constantFrom(
    'https://github.com/acme/"][core]sshCommand=touch /tmp/x;[x"',
    "https://example.com/a?b=c#d",
    "https://[::1]:5000/x",
    "https://u:p@github.com/",
  ),
);

/** Renders or returns the OutputError; any other exception fails the property. */
function render(target: SecretTarget, ctx: OutputContext): Record<string, string> | OutputError {
  try {
    return desiredSecret(target, ctx).data;
  } catch (err) {
    if (err instanceof OutputError) return err;
    throw err;
  }
}

const lines = (text: string) => {
  expect(text.endsWith("\n")).toBe(true);
  return text.slice(0, -1).split("\n");
};

/** netrc: whitespace-separated tokens, no quoting at all. */
function parseNetrc(text: string): string[] {
  return text.split(/[\s]+/).filter((t) => t !== "");
}

/** git config: `[section "subsection"]` and `\tkey = "value"` lines, with \" and \\ escapes. */
function parseGitconfig(text: string): { sections: string[]; keys: [string, string][] } {
  const sections: string[] = [];
  const keys: [string, string][] = [];
  const unquote = (s: string) => s.replace(/\\(.)/g, "$1");
  for (const line of lines(text)) {
    const section = line.match(/^\[url "((?:[^"\\]|\\.)*)"\]$/);
    const key = line.match(/^\t([A-Za-z]+) = "((?:[^"\\]|\\.)*)"$/);
    if (section?.[1] !== undefined) sections.push(unquote(section[1]));
    else if (key?.[1] !== undefined && key[2] !== undefined) keys.push([key[1], unquote(key[2])]);
    else throw new Error(`unparseable gitconfig line ${JSON.stringify(line)}`);
  }
  return { sections, keys };
}

/** env file: KEY='value' lines (single quotes: literal). */
function parseEnv(text: string): [string, string][] {
  return lines(text).map((line) => {
    const m = line.match(/^([A-Z_]+)='([^']*)'$/);
    if (!m?.[1] || m[2] === undefined) throw new Error(`unparseable env line ${JSON.stringify(line)}`);
    return [m[1], m[2]];
  });
}

/** The host name a netrc `machine` must name: netrc has no ports and no brackets. */
const hostnameOf = (h: string) => h.replace(/:[0-9]+$/, "").replace(/^\[(.*)\]$/, "$1");

// A thousand runs per property: on a loaded 2-core machine one can take longer than the default 20 s.
describe("outputs under arbitrary values", { timeout: 90_000 }, () => {
  it("netrc holds exactly one machine, login and password", () => {
    fc.assert(
      fc.property(token, host, (t, h) => {
        const out = render({ name: "s", format: "netrc" }, { ...base, token: t, host: h });
        if (out instanceof OutputError) return;
        const text = out[".netrc"] ?? "";
        expect(lines(text)).toHaveLength(3);
        const [keyword, machine, ...rest] = parseNetrc(text);
        expect(keyword).toBe("machine");
        expect(machine).toBe(hostnameOf(h));
        expect(rest).toEqual(["login", "x-access-token", "password", t]);
      }),
      { numRuns: 1000 },
    );
  });

  it("gitconfig holds exactly one url section with one insteadOf", () => {
    fc.assert(
      fc.property(token, host, url, (t, h, u) => {
        const target: SecretTarget = {
          name: "s",
          format: "gitconfig",
          ...(u === undefined ? {} : { url: u }),
        };
        const out = render(target, { ...base, token: t, host: h });
        if (out instanceof OutputError) return;
        const parsed = parseGitconfig(out[".gitconfig"] ?? "");
        expect(parsed.sections).toHaveLength(1);
        expect(parsed.keys).toHaveLength(1);
        const [name, value] = parsed.keys[0] ?? [];
        expect(name).toBe("insteadOf");
        const prefix = u === undefined ? `https://${h}/` : u.endsWith("/") ? u : `${u}/`;
        expect(value).toBe(prefix);
        expect(parsed.sections[0]).toBe(
          prefix.replace("https://", `https://x-access-token:${encodeURIComponent(t)}@`),
        );
        const authed = new URL(parsed.sections[0] ?? "");
        expect(decodeURIComponent(authed.password)).toBe(t);
        expect(authed.host).toBe(new URL(prefix).host);
      }),
      { numRuns: 1000 },
    );
  });

  it("refuses a host no URL parser accepts (a numeric last label is an IPv4 address)", () => {
    for (const format of ["gitCredentials", "netrc"] as const) {
      const out = render({ name: "s", format }, { ...base, token: "ghs_x", host: "github.com.0" });
      expect(out).toBeInstanceOf(OutputError);
    }
  });

  it("git-credentials holds exactly one URL with the token as its password", () => {
    fc.assert(
      fc.property(token, host, (t, h) => {
        const out = render({ name: "s", format: "gitCredentials" }, { ...base, token: t, host: h });
        if (out instanceof OutputError) return;
        const all = lines(out[".git-credentials"] ?? "");
        expect(all).toHaveLength(1);
        const parsed = new URL(all[0] ?? "");
        expect(parsed.protocol).toBe("https:");
        expect(parsed.username).toBe("x-access-token");
        expect(decodeURIComponent(parsed.password)).toBe(t);
        expect(parsed.host).toBe(new URL(`https://${h}`).host);
        expect(`${parsed.pathname}${parsed.search}${parsed.hash}`).toBe("/");
      }),
      { numRuns: 1000 },
    );
  });

  it("an env file holds exactly GITHUB_TOKEN and GH_TOKEN, each the token", () => {
    fc.assert(
      fc.property(token, (t) => {
        const out = render({ name: "s", format: "envFile" }, { ...base, token: t });
        if (out instanceof OutputError) return;
        expect(parseEnv(out[".env"] ?? "")).toEqual([
          ["GITHUB_TOKEN", t],
          ["GH_TOKEN", t],
        ]);
      }),
      { numRuns: 1000 },
    );
  });

  it("dockerconfigjson holds exactly one registry with username, password and auth", () => {
    fc.assert(
      fc.property(token, url, (t, u) => {
        const target: SecretTarget = {
          name: "s",
          format: "dockerConfigJson",
          ...(u === undefined ? {} : { url: u }),
        };
        const out = render(target, { ...base, token: t });
        if (out instanceof OutputError) return;
        expect(Object.keys(out)).toEqual([".dockerconfigjson"]);
        const config = JSON.parse(out[".dockerconfigjson"] ?? "") as Record<string, unknown>;
        expect(Object.keys(config)).toEqual(["auths"]);
        const auths = config.auths as Record<string, Record<string, unknown>>;
        expect(Object.keys(auths)).toEqual([u === undefined ? "ghcr.io" : new URL(u).host]);
        const entry = Object.values(auths)[0] ?? {};
        expect(Object.keys(entry).sort()).toEqual(["auth", "password", "username"]);
        expect(entry.password).toBe(t);
        expect(entry.username).toBe("x-access-token");
        expect(Buffer.from(String(entry.auth), "base64").toString()).toBe(`x-access-token:${t}`);
      }),
      { numRuns: 1000 },
    );
  });

  it("never refuses a realistic token on a real host", () => {
    const formats = ["netrc", "gitconfig", "gitCredentials", "envFile", "dockerConfigJson"] as const;
    fc.assert(
      fc.property(
        realistic,
        fc.constantFrom("github.com", "ghe.corp.example", "127.0.0.1:8443", "[::1]:5000"),
        fc.constantFrom(...formats),
        (t, h, format) => {
          expect(render({ name: "s", format }, { ...base, token: t, host: h })).not.toBeInstanceOf(
            OutputError,
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});
