import { describe, expect, it } from "vitest";
import { nextPagePath } from "../../../src/github/link.ts";

const base = "https://ghe.example/api/v3";

describe("nextPagePath", () => {
  it.each<[string, string | null, string | undefined]>([
    ["no header (the only page)", null, undefined],
    [
      "the last page",
      `<${base}/app/installations?page=1>; rel="first", <${base}/app/installations?page=2>; rel="prev"`,
      undefined,
    ],
    [
      "next among others",
      `<${base}/app/installations?page=3>; rel="next", <${base}/app/installations?page=9>; rel="last"`,
      "/app/installations?page=3",
    ],
    [
      "next written last",
      `<${base}/app/installations?page=9>; rel="last", <${base}/app/installations?page=3>; rel="next"`,
      "/app/installations?page=3",
    ],
    ["rel without quotes", `<${base}/app/installations?page=2>; rel=next`, "/app/installations?page=2"],
    ["a relative link", `</api/v3/app/installations?page=2>; rel="next"`, "/app/installations?page=2"],
  ])("%s", (_case, link, path) => {
    expect(nextPagePath(link, base)).toBe(path);
  });

  it.each([
    ["another host", `<https://evil.example/api/v3/app/installations?page=2>; rel="next"`],
    ["another path on the same host", `<https://ghe.example/other/app/installations?page=2>; rel="next"`],
    ["http instead of https", `<http://ghe.example/api/v3/app/installations?page=2>; rel="next"`],
  ])("refuses a next link to %s", (_case, link) => {
    expect(() => nextPagePath(link, base)).toThrow(expect.objectContaining({ code: "GitHubUnavailable" }));
  });
});
