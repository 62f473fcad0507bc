/**
 * Bundles the operator (src/main.ts) into one minified ES module, dist/ghat.mjs, that runs with
 * nothing else beside it: no node_modules, no package.json. The container image ships only
 * this file and dist/chunks/ (Dockerfile); the npm package keeps the tsc build (dist/main.js,
 * dist/cli.js).
 *
 * - Keyless signers (src/signer/*) and their SDKs (AWS, Google, Azure) are imported
 *   dynamically: esbuild splits each into a chunk under dist/chunks/ that is loaded only when
 *   an App uses that backend, so an operator with PEM keys loads none of them. pkcs11js is a
 *   native addon and stays external: a PKCS#11 image adds it (and the HSM's module) itself.
 *
 * - The version is embedded at bundle time from package.json (src/version.ts reads
 *   ../package.json at run time, which the image does not ship); GHAT_REVISION stays a
 *   run-time environment variable.
 * - CommonJS dependencies call require() for Node built-ins: the banner gives the module a
 *   real `require` (createRequire), which an ES module lacks.
 * - pino's transports (`--log-format pretty`, for the sandbox) run pino-pretty in a worker
 *   thread loaded from files in node_modules, which the bundle does not have. pino's
 *   lib/transport.js is replaced by a stub that fails with a clear message (the operator exits
 *   1 at start); JSON logging (the default, and what the container uses) never starts a worker.
 *
 * Run: node hack/bundle.ts [--outfile dist/ghat.mjs] [--readable]
 */
import { readFileSync, rmSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { basename, dirname, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";

const root = fileURLToPath(new URL("../", import.meta.url));

/** What `--log-format pretty` says when run from the bundle. */
export const prettyUnavailable =
  "--log-format pretty is not available in the single-file bundle (it needs pino-pretty in a worker thread); " +
  "use --log-format json, or run dist/main.js or src/cli.ts";

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(`${root}package.json`, "utf8")) as { version?: unknown };
  if (typeof pkg.version !== "string" || pkg.version === "") throw new Error("package.json has no version");
  return pkg.version;
}

/** Replaces the run-time read of package.json in src/version.ts with the version itself. */
function embedVersion(version: string, done: Set<string>): Plugin {
  const call = "= readVersion();";
  return {
    name: "ghat-embed-version",
    setup(b) {
      b.onLoad({ filter: /[\\/]src[\\/]version\.ts$/ }, (args) => {
        const source = readFileSync(args.path, "utf8");
        // Exactly one place, or the bundle fails: a changed version.ts must not silently ship
        // a bundle that looks for a package.json it does not have.
        if (source.split(call).length !== 2) {
          throw new Error(`${args.path}: expected exactly one "${call}" to embed the version into`);
        }
        done.add("version");
        return { contents: source.replace(call, `= ${JSON.stringify(version)};`), loader: "ts" };
      });
    },
  };
}

/**
 * pino's transports (lib/transport.js, which starts thread-stream's worker) cannot run from a
 * single file: the module is replaced by one that fails with a clear message when called.
 */
function noPinoTransports(done: Set<string>): Plugin {
  return {
    name: "ghat-no-pino-transports",
    setup(b) {
      b.onLoad({ filter: /[\\/]node_modules[\\/]pino[\\/]lib[\\/]transport\.js$/ }, () => {
        done.add("pino-transport");
        return {
          contents: `module.exports = function transport() { throw new Error(${JSON.stringify(prettyUnavailable)}); };`,
          loader: "js",
        };
      });
    },
  };
}

/** What client-node's transport says in the bundle, where ghat's own (src/kube/rest.ts) replaces it. */
const undiciUnavailable =
  "client-node's undici transport is not in the ghat bundle: Kubernetes requests go through src/kube/rest.ts";

/**
 * client-node's index imports every generated API and model class, whose module bodies
 * (ObjectSerializer's type maps, static attribute tables) esbuild must keep unless told they
 * have no side effects: the package does not say so itself. ghat's own code uses only
 * KubeConfig and the request context (src/kube/rest.ts), so with this the bundle leaves out
 * about 1 MiB of code and an idle operator ~40 MiB of memory.
 *
 * client-node's own transport is undici (KubeConfig.applySecurityAuthentication builds an undici
 * Agent; its watch and log helpers fetch with it). ghat sends its Kubernetes requests over
 * node:https (src/kube/rest.ts) and GitHub's over node:https too (src/github/transport.ts),
 * so client-node's import of undici is a stub that throws if called: evaluated at start,
 * undici alone was about 15 MiB of an idle operator. ghat's own lazy import of undici (for an
 * App with a proxy) is untouched and becomes a chunk of its own.
 */
function clientNodeWithoutSideEffects(done: Set<string>): Plugin {
  return {
    name: "ghat-client-node-side-effect-free",
    setup(b) {
      b.onLoad({ filter: /.*/, namespace: "ghat-undici-stub" }, () => ({
        contents: `const unavailable = function () { throw new Error(${JSON.stringify(undiciUnavailable)}); };
module.exports = { Agent: unavailable, ProxyAgent: unavailable, fetch: unavailable };`,
        loader: "js",
      }));
      b.onResolve({ filter: /.*/ }, async (args) => {
        if (args.pluginData === "ghat-resolved") return undefined;
        const fromClientNode = /[\\/]@kubernetes[\\/]client-node[\\/]/.test(args.importer);
        if (fromClientNode && args.path === "undici") {
          done.add("client-node-undici");
          return { path: "undici", namespace: "ghat-undici-stub" };
        }
        if (!fromClientNode && !args.path.startsWith("@kubernetes/client-node")) return undefined;
        const r = await b.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: "ghat-resolved",
        });
        if (r.errors.length > 0 || !/[\\/]@kubernetes[\\/]client-node[\\/]/.test(r.path)) return r;
        done.add("client-node");
        return { ...r, sideEffects: false };
      });
    },
  };
}

/**
 * Node's built-in modules are loaded with require(), not ES imports. An ES import of a built-in
 * goes through its ES module facade, which reads every export once, getters included: for
 * node:http that is `WebSocket`, `CloseEvent` and `MessageEvent`, which load Node's internal
 * undici, fetch and web streams (about 13 MiB of a running operator) that ghat never uses.
 * Each import is replaced by a module that requires the built-in (esbuild reads its named
 * exports lazily, through getters).
 */
function builtinsByRequire(done: Set<string>): Plugin {
  const builtins = new Set(builtinModules.map((m) => m.replace(/^node:/, "")));
  return {
    name: "ghat-builtins-by-require",
    setup(b) {
      b.onResolve({ filter: /^(node:)?[a-z_/0-9]+$/ }, (args) => {
        const name = args.path.replace(/^node:/, "");
        if (!builtins.has(name)) return undefined;
        if (args.kind !== "import-statement" && args.kind !== "dynamic-import") {
          return { path: `node:${name}`, external: true };
        }
        done.add("builtins");
        return { path: `node:${name}`, namespace: "ghat-builtin" };
      });
      b.onLoad({ filter: /.*/, namespace: "ghat-builtin" }, (args) => ({
        contents: `module.exports = require(${JSON.stringify(args.path)});`,
        loader: "js",
      }));
    },
  };
}

/**
 * zod's `z.locales` re-exports its error messages in ~50 languages (about 250 KiB of code the
 * operator would parse and keep at start); ghat reports in English only, which zod configures
 * for itself (classic/external.js imports locales/en.js directly).
 */
function zodEnglishOnly(done: Set<string>): Plugin {
  return {
    name: "ghat-zod-english-only",
    setup(b) {
      b.onLoad({ filter: /[\\/]node_modules[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/ }, () => {
        done.add("zod-locales");
        return { contents: 'export { default as en } from "./en.js";', loader: "js" };
      });
    },
  };
}

export interface BundleResult {
  outfile: string;
  bytes: number;
  version: string;
  warnings: string[];
}

/**
 * `readable`: identifiers kept (whitespace and syntax still minified), so a CPU profile or heap
 * snapshot of the bundle names functions and classes as the source does (bench/profile.ts).
 */
export async function bundle(outfile = `${root}dist/ghat.mjs`, readable = false): Promise<BundleResult> {
  const version = packageVersion();
  const done = new Set<string>();
  // Chunks of earlier builds would otherwise pile up beside the new ones (and into the image).
  rmSync(`${dirname(outfile)}/chunks`, { recursive: true, force: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints: { [basename(outfile).replace(/\.mjs$/, "")]: `${root}src/main.ts` },
    outdir: dirname(outfile),
    outExtension: { ".js": ".mjs" },
    splitting: true,
    chunkNames: "chunks/[name]-[hash]",
    bundle: true,
    minifyWhitespace: true,
    minifySyntax: true,
    minifyIdentifiers: !readable,
    keepNames: readable,
    format: "esm",
    platform: "node",
    target: "node24",
    // Nothing else is external: the image has no node_modules.
    external: ["pkcs11js"],
    banner: {
      js: 'import { createRequire as __ghatCreateRequire } from "node:module"; const require = __ghatCreateRequire(import.meta.url);',
    },
    legalComments: "eof",
    plugins: [
      builtinsByRequire(done),
      embedVersion(version, done),
      noPinoTransports(done),
      clientNodeWithoutSideEffects(done),
      zodEnglishOnly(done),
    ],
    logLevel: "silent",
  });
  // A moved file would otherwise ship a bundle that reads a package.json it does not have, or
  // one that brings thread-stream back.
  for (const step of [
    "builtins",
    "version",
    "pino-transport",
    "client-node",
    "client-node-undici",
    "zod-locales",
  ]) {
    if (!done.has(step)) throw new Error(`bundle: the ${step} replacement found nothing to replace`);
  }
  const warnings = result.warnings.map((w) => `${w.location?.file ?? ""}: ${w.text}`);
  return { outfile, bytes: statSync(outfile).size, version, warnings };
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const at = args.indexOf("--outfile");
  const outfile = at >= 0 ? args[at + 1] : undefined;
  if (at >= 0 && !outfile) {
    process.stderr.write("usage: node hack/bundle.ts [--outfile FILE] [--readable]\n");
    process.exit(2);
  }
  const result = await bundle(outfile, args.includes("--readable"));
  for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
  process.stdout.write(
    `Bundled ghat ${result.version} into ${relative(process.cwd(), result.outfile) || result.outfile} ` +
      `(${(result.bytes / 2 ** 20).toFixed(2)} MiB)\n`,
  );
}
