/**
 * The escape-hatch output format: a tiny, safe template language.
 *
 *   {{ token }}   {{ host }}   {{ owner | default "acme" }}   {{ token | base64 }}
 *
 * Only variable substitution with a fixed set of variables and filters: no loops, no
 * conditionals, no function calls, no HTML escaping, no access to anything but the values
 * passed in. Output size is bounded. Errors name the line and column.
 */

export const templateVariables = ["token", "username", "host", "owner", "expiresAt", "apiUrl"] as const;
export type TemplateVariable = (typeof templateVariables)[number];
export type TemplateValues = Record<TemplateVariable, string>;

const filters: Record<string, (value: string, arg: string | undefined) => string> = {
  base64: (v) => Buffer.from(v).toString("base64"),
  urlencode: (v) => encodeURIComponent(v),
  json: (v) => JSON.stringify(v),
  upper: (v) => v.toUpperCase(),
  lower: (v) => v.toLowerCase(),
  default: (v, arg) => (v === "" ? (arg ?? "") : v),
};

/** Largest rendered value (UTF-8 bytes); Secrets hold at most 1 MiB in all. */
export const maxTemplateOutput = 256 * 1024;
/** Longest template source (characters), as admission allows. */
export const maxTemplateSource = 16 * 1024;
/** Most filters in one {{ … }} expression. */
export const maxFiltersPerExpression = 8;
/** Most {{ … }} expressions in one template. */
export const maxExpressions = 64;

export class TemplateError extends Error {
  override name = "TemplateError";
  readonly line: number;
  readonly column: number;
  constructor(message: string, source: string, offset: number) {
    const before = source.slice(0, offset).split("\n");
    const line = before.length;
    const column = (before.at(-1)?.length ?? 0) + 1;
    super(`line ${line}, column ${column}: ${message}`);
    this.line = line;
    this.column = column;
  }
}

interface Pipe {
  name: string;
  arg: string | undefined;
  /** Offset of the filter in the source (for errors). */
  at: number;
}

type Part = { text: string } | { variable: TemplateVariable; pipes: Pipe[]; at: number };

/**
 * Parses a template; throws TemplateError with the position of the first problem. The
 * source, the number of expressions and the filters per expression are bounded, so the
 * work rendering may do is known before any of it is done.
 */
export function parseTemplate(source: string): Part[] {
  if (source.length > maxTemplateSource) {
    throw new TemplateError(
      `template is longer than ${maxTemplateSource} characters`,
      source,
      maxTemplateSource,
    );
  }
  const parts: Part[] = [];
  let expressions = 0;
  let i = 0;
  while (i < source.length) {
    const open = source.indexOf("{{", i);
    if (open < 0) {
      parts.push({ text: source.slice(i) });
      break;
    }
    if (open > i) parts.push({ text: source.slice(i, open) });
    const close = source.indexOf("}}", open + 2);
    if (close < 0) throw new TemplateError('"{{" is not closed by "}}"', source, open);
    if (++expressions > maxExpressions) {
      throw new TemplateError(`more than ${maxExpressions} {{ }} expressions in one template`, source, open);
    }
    const inner = source.slice(open + 2, close);
    // Offsets of each "|"-separated segment, so errors point at the segment itself.
    const raw = inner.split("|");
    const starts: number[] = [];
    let offset = open + 2;
    for (const seg of raw) {
      starts.push(offset + (seg.length - seg.trimStart().length));
      offset += seg.length + 1;
    }
    const segments = raw.map((seg) => seg.trim());
    const name = segments[0] ?? "";
    if (!(templateVariables as readonly string[]).includes(name)) {
      throw new TemplateError(
        `unknown variable "${name.slice(0, 40)}" (known: ${templateVariables.join(", ")})`,
        source,
        starts[0] ?? open + 2,
      );
    }
    if (segments.length - 1 > maxFiltersPerExpression) {
      throw new TemplateError(
        `more than ${maxFiltersPerExpression} filters in one expression`,
        source,
        starts[maxFiltersPerExpression + 1] ?? open,
      );
    }
    const pipes = segments.slice(1).map((seg, n): Pipe => {
      const at = starts[n + 1] ?? open;
      const m = seg.match(/^([a-z0-9]+)(?:\s+"([^"]*)")?$/);
      const filter = m?.[1];
      if (!m || filter === undefined || !Object.hasOwn(filters, filter)) {
        throw new TemplateError(
          `unknown filter "${seg.slice(0, 40)}" (known: ${Object.keys(filters).join(", ")})`,
          source,
          at,
        );
      }
      return { name: filter, arg: m[2], at };
    });
    parts.push({ variable: name as TemplateVariable, pipes, at: starts[0] ?? open + 2 });
    i = close + 2;
  }
  return parts;
}

export interface RenderOptions {
  /** Largest output in UTF-8 bytes (default maxTemplateOutput): the budget left for this key. */
  maxOutput?: number;
}

/**
 * Renders a template. The size is checked after every filter and every part, so a chain
 * of growing filters stops at the first value over the limit, before memory grows.
 */
export function renderTemplate(source: string, values: TemplateValues, options: RenderOptions = {}): string {
  const limit = Math.min(options.maxOutput ?? maxTemplateOutput, maxTemplateOutput);
  const tooLarge = (at: number, what: string) =>
    new TemplateError(`${what} is larger than ${limit} bytes (the output limit)`, source, at);
  let out = "";
  let size = 0;
  for (const part of parseTemplate(source)) {
    let v: string;
    if ("text" in part) v = part.text;
    else {
      v = values[part.variable];
      if (Buffer.byteLength(v) > limit) throw tooLarge(part.at, `the value of ${part.variable}`);
      for (const p of part.pipes) {
        v = (filters[p.name] as (value: string, arg: string | undefined) => string)(v, p.arg);
        if (Buffer.byteLength(v) > limit) throw tooLarge(p.at, `the value after filter ${p.name}`);
      }
    }
    size += Buffer.byteLength(v);
    if (size > limit) throw tooLarge("at" in part ? part.at : 0, "the output");
    out += v;
  }
  return out;
}
