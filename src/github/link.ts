import { GhatError } from "../core/errors.ts";

/**
 * The `rel="next"` target of a `Link` header as a path below `base` (the API base URL without
 * a trailing slash), or undefined on the last page. A link outside the base URL is refused:
 * the App's JWT is never sent to another host.
 */
export function nextPagePath(link: string | null, base: string): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(",")) {
    const m = part.match(/<([^>]*)>((?:\s*;\s*[^;]+)*)/);
    if (!m) continue;
    const rels =
      (m[2] ?? "")
        .match(/;\s*rel\s*=\s*"?([^";]+)"?/i)?.[1]
        ?.trim()
        .split(/\s+/) ?? [];
    if (!rels.includes("next")) continue;
    let target: URL;
    try {
      target = new URL(m[1] ?? "", `${base}/`);
    } catch {
      throw new GhatError("GitHubUnavailable", "GitHub's Link header holds an unreadable next-page URL");
    }
    if (!target.href.startsWith(`${base}/`)) {
      throw new GhatError(
        "GitHubUnavailable",
        `GitHub's Link header points outside ${new URL(base).host}; refusing to follow it with the App's JWT`,
      );
    }
    return target.href.slice(base.length);
  }
  return undefined;
}
