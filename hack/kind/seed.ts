/**
 * The simulator seed of the installed-operator e2e test (test/e2e/installed.test.ts), shared
 * with hack/kind-e2e.sh: `node hack/kind/seed.ts <public-key.pem>` prints it as JSON.
 */
import { readFileSync } from "node:fs";

export const installedAppId = 4343;
export const installedInstallationId = 9101;

export function installedSeed(publicKeyPem: string) {
  return {
    apps: [
      {
        id: installedAppId,
        clientId: "Iv23liInstalled",
        slug: "ghat-installed",
        owner: "acme",
        publicKeys: [publicKeyPem],
      },
    ],
    installations: [
      {
        id: installedInstallationId,
        appId: installedAppId,
        account: { login: "acme", type: "Organization" },
        permissions: { contents: "write", metadata: "read" },
        repositorySelection: "all",
      },
    ],
    repositories: [{ id: 601, owner: "acme", name: "app", private: true }],
  };
}

if (import.meta.main) {
  const path = process.argv[2];
  if (!path) {
    process.stderr.write("usage: node hack/kind/seed.ts <public-key.pem>\n");
    process.exit(2);
  }
  process.stdout.write(`${JSON.stringify(installedSeed(readFileSync(path, "utf8")), null, 2)}\n`);
}
