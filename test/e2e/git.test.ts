import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { generateAppKeyPair } from "../../src/sim/keys.ts";
import { type Simulator, startSimulator } from "../../src/sim/simulator.ts";
import { kubectl } from "../support/cluster.ts";
import { useOperator } from "./fixture.ts";
import { tokenYaml } from "./operator.ts";

const run = promisify(execFile);

/**
 * Real git against a private repository: the simulator serves `git http-backend` over HTTPS
 * (private CA, so the GitHubApp's caBundle is exercised too) and lets a clone through only
 * with a live token that may read the repository. Every git-related format ghat writes must
 * clone; after a rotation the new token clones and, once revoked, the old one is refused.
 */
describe("consumers clone with what ghat wrote", () => {
  const work = mkdtempSync(join(tmpdir(), "ghat-git-"));
  const keys = generateAppKeyPair();
  let ca = "";
  let sim: Simulator;
  let ns: string;
  let host = "";
  const fx = useOperator({
    github: async () => {
      const sh = (cmd: string, cwd = work) => execFileSync("sh", ["-c", cmd], { cwd, stdio: "ignore" });
      sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=git-test-ca",
      );
      sh("openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1");
      writeFileSync(join(work, "ext"), "subjectAltName=IP:127.0.0.1\n");
      sh(
        "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 1 -extfile ext",
      );
      ca = readFileSync(join(work, "ca.crt"), "utf8");
      // A private repository acme/app with one commit.
      const src = join(work, "src");
      mkdirSync(src);
      sh(
        "git init -q -b main . && git -c user.email=t@e -c user.name=t commit -q --allow-empty -m hello",
        src,
      );
      mkdirSync(join(work, "repos/acme"), { recursive: true });
      sh(`git clone -q --bare ${src} repos/acme/app.git`);
      sim = await startSimulator({
        gitRoot: join(work, "repos"),
        tls: {
          cert: readFileSync(join(work, "srv.crt"), "utf8"),
          key: readFileSync(join(work, "srv.key"), "utf8"),
        },
        tokenFormat: "stateless",
        seed: {
          apps: [
            { id: 4242, clientId: "Iv23liGit", slug: "git", owner: "acme", publicKeys: [keys.publicKeyPem] },
          ],
          installations: [
            {
              id: 9001,
              appId: 4242,
              account: { login: "acme", type: "Organization" },
              permissions: { contents: "read", metadata: "read" },
            },
          ],
          repositories: [
            { id: 501, owner: "acme", name: "app", private: true },
            { id: 502, owner: "acme", name: "other", private: true },
          ],
        },
      });
      return { sim, keys };
    },
    operator: ["--revoke-superseded-after", "2s"],
  });
  const { kube } = fx;

  beforeAll(async () => {
    host = new URL(sim.url).host;
    ns = await fx.withApp("git", { caBundle: ca });
  });

  const repoUrl = () => `https://${host}/acme/app.git`;
  const secrets = [
    { name: "g-token" },
    { name: "g-flux", format: "basicAuth" },
    { name: "g-argocd", format: "argocdRepository", url: "" },
    { name: "g-repo-creds", format: "argocdRepoCreds" },
    { name: "g-credentials", format: "gitCredentials" },
    { name: "g-gitconfig", format: "gitconfig" },
    { name: "g-netrc", format: "netrc" },
  ];

  /** git clone with a fresh HOME holding `files`, extra config and env; resolves to success. */
  async function clone(
    files: Record<string, string>,
    args: string[] = [],
    url = repoUrl(),
    caInfo = join(work, "ca.crt"),
  ): Promise<boolean> {
    const home = mkdtempSync(join(work, "home-"));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(home, name), text, { mode: 0o600 });
    try {
      await run("git", [...args, "clone", "-q", url, join(home, "checkout")], {
        env: {
          PATH: process.env.PATH ?? "",
          HOME: home,
          GIT_SSL_CAINFO: caInfo,
          GIT_TERMINAL_PROMPT: "0",
          GIT_CONFIG_NOSYSTEM: "1",
          ...(files[".gitconfig"] ? { GIT_CONFIG_GLOBAL: join(home, ".gitconfig") } : {}),
        },
      });
      return readFileSync(join(home, "checkout/.git/HEAD"), "utf8").includes("main");
    } catch {
      return false;
    }
  }

  const data = async (name: string) => {
    const s = await kube.secret(ns, name);
    return Object.fromEntries(
      Object.entries(s?.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]),
    );
  };
  const withCreds = (user: string, password: string, url = repoUrl()) =>
    url.replace("https://", `https://${encodeURIComponent(user)}:${encodeURIComponent(password)}@`);

  async function cloneWithEveryFormat(): Promise<Record<string, boolean>> {
    const flux = await data("g-flux");
    // Flux reads the CA from the same Secret (ca.crt): the clone trusts only that.
    const fluxCa = join(mkdtempSync(join(work, "flux-ca-")), "ca.crt");
    writeFileSync(fluxCa, flux["ca.crt"] ?? "");
    const argo = await data("g-argocd");
    const creds = await data("g-repo-creds");
    return {
      token: await clone({}, [], withCreds("x-access-token", (await data("g-token")).token ?? "")),
      flux: await clone({}, [], withCreds(flux.username ?? "", flux.password ?? ""), fluxCa),
      argocd: await clone({}, [], withCreds(argo.username ?? "", argo.password ?? "", argo.url)),
      repoCreds: await clone(
        {},
        [],
        withCreds(creds.username ?? "", creds.password ?? "", `${creds.url}/app.git`),
      ),
      gitCredentials: await clone(
        { ".git-credentials": (await data("g-credentials"))[".git-credentials"] ?? "" },
        ["-c", "credential.helper=store"],
      ),
      gitconfig: await clone({ ".gitconfig": (await data("g-gitconfig"))[".gitconfig"] ?? "" }),
      netrc: await clone({ ".netrc": (await data("g-netrc"))[".netrc"] ?? "" }),
    };
  }

  it("refuses a clone without a token, with a wrong one, and for a repository the token does not cover", async () => {
    expect(await clone({})).toBe(false);
    expect(await clone({}, [], withCreds("x-access-token", "ghs_not-a-real-token"))).toBe(false);
  });

  it("clones with every git-related format, with the long stateless token", async () => {
    const spec = {
      installation: { owner: "acme" },
      repositories: ["app"],
      secrets: secrets.map((s) => (s.url === "" ? { ...s, url: repoUrl() } : s)),
    };
    expect((await kubectl(["-n", ns, "apply", "-f", "-"], { input: tokenYaml("g", spec) })).code).toBe(0);
    expect((await kubectl(["-n", ns, "wait", "--for=condition=Ready", "ghat/g", "--timeout=60s"])).code).toBe(
      0,
    );
    expect(((await data("g-token")).token ?? "").length).toBeGreaterThan(400);
    expect(await cloneWithEveryFormat()).toEqual({
      token: true,
      flux: true,
      argocd: true,
      repoCreds: true,
      gitCredentials: true,
      gitconfig: true,
      netrc: true,
    });
    // The token covers acme/app only.
    expect(
      await clone(
        {},
        [],
        withCreds("x-access-token", (await data("g-token")).token ?? "", `https://${host}/acme/other.git`),
      ),
    ).toBe(false);
  });

  it("after a rotation the new token clones and, once the old one is revoked, the old one is refused", async () => {
    const old = (await data("g-token")).token ?? "";
    const spec = {
      installation: { owner: "acme" },
      permissions: { contents: "read", metadata: "read" },
      repositories: ["app"],
      secrets: secrets.map((s) => (s.url === "" ? { ...s, url: repoUrl() } : s)),
    };
    expect((await kubectl(["-n", ns, "apply", "-f", "-"], { input: tokenYaml("g", spec) })).code).toBe(0);
    await expect.poll(async () => (await data("g-token")).token, { timeout: 20_000 }).not.toBe(old);
    expect(Object.values(await cloneWithEveryFormat()).every(Boolean)).toBe(true);
    await expect.poll(() => sim.checkToken(old).reason, { timeout: 20_000 }).toBe("revoked");
    expect(await clone({}, [], withCreds("x-access-token", old))).toBe(false);
  });

  it("writes exactly the fields, labels and types Argo CD and Flux read", async () => {
    const argo = await kube.secret(ns, "g-argocd");
    expect(argo?.metadata?.labels?.["argocd.argoproj.io/secret-type"]).toBe("repository");
    expect(Object.keys(argo?.data ?? {}).sort()).toEqual(["password", "type", "url", "username"]);
    expect((await data("g-argocd")).type).toBe("git");
    const creds = await kube.secret(ns, "g-repo-creds");
    expect(creds?.metadata?.labels?.["argocd.argoproj.io/secret-type"]).toBe("repo-creds");
    expect((await data("g-repo-creds")).url).toBe(`https://${host}/acme`);
    const flux = await kube.secret(ns, "g-flux");
    expect(flux?.type).toBe("kubernetes.io/basic-auth");
    // ca.crt: the App has a caBundle (a private CA), and Flux reads the CA from this Secret.
    expect(Object.keys(flux?.data ?? {}).sort()).toEqual(["ca.crt", "password", "username"]);
    expect(Buffer.from(flux?.data?.["ca.crt"] ?? "", "base64").toString()).toBe(ca);
  });

  fx.itLeaksNothing({ minLines: false });
});
