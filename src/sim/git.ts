import { spawn } from "node:child_process";
import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * Git over smart HTTP, as GitHub serves it on its web host: `/<owner>/<repo>.git/...` runs
 * `git http-backend` (CGI) for repositories under `root`, after checking Basic credentials
 * (username x-access-token, password an installation token) against the simulator's tokens.
 */
export interface GitAccess {
  /** Can `token` read (or, for push, write) `owner/repo`? */
  allowed(token: string, repository: string, write: boolean): boolean;
}

const gitPath =
  /^\/([^/]+)\/([^/]+?)(?:\.git)?(\/(?:info\/refs|git-upload-pack|git-receive-pack|HEAD|objects\/.*))$/;

export function isGitRequest(path: string): boolean {
  return gitPath.test(path);
}

export function serveGit(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  root: string,
  access: GitAccess,
  body: Buffer,
): void {
  const m = url.pathname.match(gitPath);
  if (!m) {
    res.writeHead(404).end();
    return;
  }
  const [, owner = "", repo = "", rest = ""] = m;
  const write = url.searchParams.get("service") === "git-receive-pack" || rest === "/git-receive-pack";
  const auth = req.headers.authorization?.match(/^Basic\s+(\S+)$/i)?.[1];
  const password = auth ? Buffer.from(auth, "base64").toString("utf8").split(":").slice(1).join(":") : "";
  if (!password || !access.allowed(password, `${owner}/${repo}`, write)) {
    res
      .writeHead(401, { "www-authenticate": 'Basic realm="GitHub"', "content-type": "text/plain" })
      .end("Authentication failed\n");
    return;
  }
  const cgi = spawn("git", ["http-backend"], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: "1",
      REQUEST_METHOD: req.method ?? "GET",
      PATH_INFO: `/${owner}/${repo}.git${rest}`,
      QUERY_STRING: url.search.replace(/^\?/, ""),
      CONTENT_TYPE: String(req.headers["content-type"] ?? ""),
      CONTENT_LENGTH: String(body.length),
      REMOTE_USER: "x-access-token",
      REMOTE_ADDR: "127.0.0.1",
      GIT_HTTP_MAX_REQUEST_BUFFER: "100M",
    },
    stdio: ["pipe", "pipe", "ignore"],
  });
  // git http-backend may exit without reading the body (an empty one, a refused request):
  // the write then fails with EPIPE, which must not become an uncaught exception.
  cgi.stdin.on("error", () => undefined);
  cgi.stdin.end(body);
  let head = Buffer.alloc(0);
  let headersDone = false;
  cgi.stdout.on("data", (chunk: Buffer) => {
    if (headersDone) {
      res.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf("\r\n\r\n");
    if (end < 0) return;
    headersDone = true;
    let status = 200;
    const headers: Record<string, string> = {};
    for (const line of head.subarray(0, end).toString("utf8").split("\r\n")) {
      const i = line.indexOf(":");
      const name = line.slice(0, i).trim().toLowerCase();
      const value = line.slice(i + 1).trim();
      if (name === "status") status = Number(value.split(" ")[0]) || 200;
      else if (name) headers[name] = value;
    }
    res.writeHead(status, headers);
    res.write(head.subarray(end + 4));
  });
  cgi.on("close", () => {
    if (!headersDone) res.writeHead(500).end("git http-backend failed\n");
    else res.end();
  });
}
