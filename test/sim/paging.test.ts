import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { linkHeader, type Page, pageOf, pageSlice } from "../../src/sim/paging.ts";

describe("paging", () => {
  it.each([
    ["", { page: 1, perPage: 30 }],
    ["per_page=100&page=3", { page: 3, perPage: 100 }],
    ["per_page=101", { page: 1, perPage: 100 }],
    ["per_page=0&page=0", { page: 1, perPage: 30 }],
    ["per_page=x&page=-1", { page: 1, perPage: 30 }],
  ])("reads %j as %j", (query, page) => {
    expect(pageOf(new URLSearchParams(query))).toEqual(page);
  });

  it("keeps the request's other query parameters in links", () => {
    const link = linkHeader(
      "https://x/list",
      new URLSearchParams("state=all&per_page=1"),
      { page: 1, perPage: 1 },
      2,
    );
    expect(link).toEqual({
      link: '<https://x/list?state=all&per_page=1&page=2>; rel="next", <https://x/list?state=all&per_page=1&page=2>; rel="last"',
    });
  });

  it("following rel=next from page 1 visits every item once, and Link appears only with more than one page", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 450 }), fc.integer({ min: 1, max: 100 }), (total, perPage) => {
        const items = Array.from({ length: total }, (_, i) => i);
        const seen: number[] = [];
        let page: number | undefined = 1;
        let pages = 0;
        while (page !== undefined) {
          const p: Page = { page, perPage };
          seen.push(...pageSlice(items, p));
          const link: string | undefined = linkHeader("https://x/list", new URLSearchParams(), p, total).link;
          if (total <= perPage) expect(link).toBeUndefined();
          const next: string | undefined = link?.match(/[?&]page=(\d+)>; rel="next"/)?.[1];
          page = next === undefined ? undefined : Number(next);
          pages++;
        }
        expect(seen).toEqual(items);
        expect(pages).toBe(Math.max(1, Math.ceil(total / perPage)));
      }),
    );
  });
});
