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

/** Largest rendered value (bytes); Secrets hold at most 1 MiB in all. */
export const maxTemplateOutput = 256 * 1024;

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

type Part =
  | { text: string }
  | { variable: TemplateVariable; pipes: { name: string; arg: string | undefined }[] };

/** Parses a template; throws TemplateError with the position of the first problem. */
export function parseTemplate(source: string): Part[] {
  const parts: Part[] = [];
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
    const inner = source.slice(open + 2, close);
    const segments = inner.split("|").map((s) => s.trim());
    const name = segments[0] ?? "";
    if (!(templateVariables as readonly string[]).includes(name)) {
      throw new TemplateError(
        `unknown variable "${name.slice(0, 40)}" (known: ${templateVariables.join(", ")})`,
        source,
        open + 2 + inner.indexOf(name),
      );
    }
    const pipes = segments.slice(1).map((seg) => {
      const m = seg.match(/^([a-z0-9]+)(?:\s+"([^"]*)")?$/);
      const filter = m?.[1];
      if (!m || filter === undefined || !Object.hasOwn(filters, filter)) {
        throw new TemplateError(
          `unknown filter "${seg.slice(0, 40)}" (known: ${Object.keys(filters).join(", ")})`,
          source,
          open + 2 + inner.indexOf(seg),
        );
      }
      return { name: filter, arg: m[2] };
    });
    parts.push({ variable: name as TemplateVariable, pipes });
    i = close + 2;
  }
  return parts;
}

export function renderTemplate(source: string, values: TemplateValues): string {
  let out = "";
  for (const part of parseTemplate(source)) {
    if ("text" in part) out += part.text;
    else {
      let v = values[part.variable];
      for (const p of part.pipes)
        v = (filters[p.name] as (value: string, arg: string | undefined) => string)(v, p.arg);
      out += v;
    }
    if (out.length > maxTemplateOutput)
      throw new TemplateError(`output is larger than ${maxTemplateOutput} bytes`, source, 0);
  }
  return out;
}
