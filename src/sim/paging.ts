export interface Page {
  page: number;
  perPage: number;
}

/** `page` and `per_page` as GitHub reads them: per_page 1..100 (default 30), page from 1. */
export function pageOf(query: URLSearchParams): Page {
  const perPageRaw = Number.parseInt(query.get("per_page") ?? "", 10);
  const pageRaw = Number.parseInt(query.get("page") ?? "", 10);
  const perPage = Number.isFinite(perPageRaw) && perPageRaw > 0 ? Math.min(100, perPageRaw) : 30;
  const page = Number.isFinite(pageRaw) && pageRaw > 0 ? pageRaw : 1;
  return { page, perPage };
}

export function pageSlice<T>(items: readonly T[], { page, perPage }: Page): T[] {
  return items.slice((page - 1) * perPage, page * perPage);
}

/**
 * GitHub's `Link` header (prev, next, last, first), only when there is more than one page.
 * Keeps the request's other query parameters, as GitHub does.
 * @see https://docs.github.com/rest/using-the-rest-api/using-pagination-in-the-rest-api
 */
export function linkHeader(
  resourceUrl: string,
  query: URLSearchParams,
  { page, perPage }: Page,
  total: number,
): Record<string, string> {
  const last = Math.max(1, Math.ceil(total / perPage));
  if (last <= 1) return {};
  const at = (n: number) => {
    const q = new URLSearchParams(query);
    q.set("per_page", String(perPage));
    q.set("page", String(n));
    return `<${resourceUrl}?${q.toString()}>`;
  };
  const links: string[] = [];
  if (page > 1) links.push(`${at(Math.min(page - 1, last))}; rel="prev"`);
  if (page < last) links.push(`${at(page + 1)}; rel="next"`);
  if (page < last) links.push(`${at(last)}; rel="last"`);
  if (page > 1) links.push(`${at(1)}; rel="first"`);
  return { link: links.join(", ") };
}
