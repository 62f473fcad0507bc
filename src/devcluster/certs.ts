import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  /** RSA key that signs and verifies service-account tokens. */
  saKey: string;
  saPub: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await run("openssl", args, { cwd });
}

/**
 * A throwaway PKI made with openssl: a CA, a serving certificate for localhost/127.0.0.1,
 * an admin client certificate (CN=admin, O=system:masters) and a service-account key.
 */
export async function createPki(dir: string): Promise<Pki> {
  await mkdir(dir, { recursive: true });
  const p = (f: string) => join(dir, f);
  await openssl(["genrsa", "-out", "ca.key", "2048"], dir);
  await openssl(
    [
      "req",
      "-x509",
      "-new",
      "-key",
      "ca.key",
      "-days",
      "3650",
      "-subj",
      "/CN=ghat-test-ca",
      "-out",
      "ca.crt",
    ],
    dir,
  );
  await writeFile(
    p("server.ext"),
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.0.0.1\n",
  );
  await signedCert(dir, "server", "/CN=kube-apiserver", "server.ext");
  await clientCert(dir, "admin", "admin", ["system:masters"]);
  await openssl(["genrsa", "-out", "sa.key", "2048"], dir);
  await openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir);
  return {
    dir,
    caCert: p("ca.crt"),
    caKey: p("ca.key"),
    serverCert: p("server.crt"),
    serverKey: p("server.key"),
    adminCert: p("admin.crt"),
    adminKey: p("admin.key"),
    saKey: p("sa.key"),
    saPub: p("sa.pub"),
  };
}

/** A client certificate: Kubernetes reads the user from CN and groups from O. */
export async function clientCert(
  dir: string,
  file: string,
  user: string,
  groups: string[],
): Promise<{ cert: string; key: string }> {
  const ext = `${file}.ext`;
  await writeFile(
    join(dir, ext),
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
  );
  const subject = `/CN=${escapeDn(user)}${groups.map((g) => `/O=${escapeDn(g)}`).join("")}`;
  await signedCert(dir, file, subject, ext);
  return { cert: join(dir, `${file}.crt`), key: join(dir, `${file}.key`) };
}

async function signedCert(dir: string, file: string, subject: string, ext: string): Promise<void> {
  await openssl(["genrsa", "-out", `${file}.key`, "2048"], dir);
  await openssl(["req", "-new", "-key", `${file}.key`, "-subj", subject, "-out", `${file}.csr`], dir);
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      `${file}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "3650",
      "-extfile",
      ext,
      "-out",
      `${file}.crt`,
    ],
    dir,
  );
}

function escapeDn(s: string): string {
  return s.replace(/[/\\,=+<>#;"]/g, (c) => `\\${c}`);
}

/** A kubeconfig with embedded certificates (so it works from any directory). */
export async function writeKubeconfig(
  path: string,
  server: string,
  caCert: string,
  cert: string,
  key: string,
  user: string,
): Promise<void> {
  const b64 = async (f: string) => (await readFile(f)).toString("base64");
  const text = [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: ghat-local",
    "  cluster:",
    `    server: ${server}`,
    `    certificate-authority-data: ${await b64(caCert)}`,
    "users:",
    `- name: ${user}`,
    "  user:",
    `    client-certificate-data: ${await b64(cert)}`,
    `    client-key-data: ${await b64(key)}`,
    "contexts:",
    "- name: ghat-local",
    "  context:",
    "    cluster: ghat-local",
    `    user: ${user}`,
    "current-context: ghat-local",
    "",
  ].join("\n");
  await writeFile(path, text, { mode: 0o600 });
}
