import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { Metrics } from "../../src/metrics.ts";

/**
 * The chart's PrometheusRule, rendered by helm, evaluated against what the real Metrics class
 * exposes, scraped every 30 s on a virtual clock. The evaluator below knows only the PromQL
 * subset the rules use; anything else is an error, so a rule it cannot evaluate fails this
 * file instead of passing it.
 */

const run = promisify(execFile);
const root = new URL("../../", import.meta.url).pathname;

// ---------------------------------------------------------------------------------------------
// Samples: the text exposition format, scraped into series over virtual time.

type Labels = Record<string, string>;
interface Sample {
  labels: Labels; // __name__ included
  value: number;
}

function unescapeLabel(v: string): string {
  return v.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
}

function parseValue(v: string): number {
  if (v === "+Inf") return Number.POSITIVE_INFINITY;
  if (v === "-Inf") return Number.NEGATIVE_INFINITY;
  if (/^nan$/i.test(v)) return Number.NaN; // prom-client writes "Nan" for an empty summary
  const n = Number(v);
  if (Number.isNaN(n)) throw new Error(`bad sample value ${v}`);
  return n;
}

/** Parses the Prometheus text format (what registry.metrics() returns). */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/.exec(line);
    if (!m) throw new Error(`cannot parse exposition line: ${line}`);
    const labels: Labels = { __name__: m[1] as string };
    const body = m[2] ?? "";
    const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)/y;
    let at = 0;
    while (at < body.length) {
      re.lastIndex = at;
      const l = re.exec(body);
      if (!l) throw new Error(`cannot parse labels in: ${line}`);
      labels[l[1] as string] = unescapeLabel(l[2] as string);
      at = re.lastIndex;
    }
    samples.push({ labels, value: parseValue(m[3] as string) });
  }
  return samples;
}

const signature = (labels: Labels, dropName = false) =>
  JSON.stringify(
    Object.entries(labels)
      .filter(([k]) => !(dropName && k === "__name__"))
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );

/** Series over time: timestamps in seconds. */
class Store {
  readonly series = new Map<string, { labels: Labels; points: [number, number][] }>();
  add(t: number, samples: Sample[]): void {
    for (const s of samples) {
      const key = signature(s.labels);
      const series = this.series.get(key) ?? { labels: s.labels, points: [] };
      this.series.set(key, series);
      series.points.push([t, s.value]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A tiny PromQL evaluator. Supported: number literals, instant and range selectors with
// =, !=, =~, !~ matchers, rate(), time(), sum / sum by (...) / sum (...) by (...),
// + - * / between scalars and vectors, < > <= >= == != as filters (no `bool`), and one-to-one
// vector matching on identical label sets. Anything else throws.

type Token = { kind: "num" | "id" | "str" | "op" | "dur"; text: string };

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const rest = src.slice(i);
    const ws = /^\s+/.exec(rest);
    if (ws) {
      i += ws[0].length;
      continue;
    }
    const dur = /^\[\s*([^\]]*?)\s*\]/.exec(rest);
    if (dur) {
      tokens.push({ kind: "dur", text: dur[1] as string });
      i += dur[0].length;
      continue;
    }
    const num = /^(?:\d+\.?\d*(?:e[+-]?\d+)?|\.\d+)/i.exec(rest);
    if (num) {
      tokens.push({ kind: "num", text: num[0] });
      i += num[0].length;
      continue;
    }
    const id = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(rest);
    if (id) {
      tokens.push({ kind: "id", text: id[0] });
      i += id[0].length;
      continue;
    }
    const str = /^"((?:[^"\\]|\\.)*)"/.exec(rest);
    if (str) {
      tokens.push({ kind: "str", text: JSON.parse(`"${str[1]}"`) as string });
      i += str[0].length;
      continue;
    }
    const op = /^(?:<=|>=|==|!=|=~|!~|[(){},<>=+\-*/])/.exec(rest);
    if (op) {
      tokens.push({ kind: "op", text: op[0] });
      i += op[0].length;
      continue;
    }
    throw new Error(`unsupported PromQL at "${rest}"`);
  }
  return tokens;
}

type Matcher = { label: string; op: "=" | "!=" | "=~" | "!~"; value: string };
type Node =
  | { t: "num"; value: number }
  | { t: "time" }
  | { t: "selector"; name: string; matchers: Matcher[]; rangeS?: number }
  | { t: "rate"; arg: Node }
  | { t: "sum"; by?: string[]; arg: Node }
  | { t: "binary"; op: string; lhs: Node; rhs: Node };

function durationSeconds(text: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(text);
  if (!m) throw new Error(`unsupported duration "${text}"`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "s" | "m" | "h" | "d"];
}

const comparisons = new Set(["<", ">", "<=", ">=", "==", "!="]);

function parsePromQL(src: string): Node {
  const tokens = tokenize(src);
  let at = 0;
  const peek = () => tokens[at];
  const next = () => {
    const t = tokens[at++];
    if (!t) throw new Error(`unexpected end of "${src}"`);
    return t;
  };
  const expect = (text: string) => {
    const t = next();
    if (t.text !== text || t.kind === "str")
      throw new Error(`expected "${text}", got "${t.text}" in "${src}"`);
  };
  const labelList = (): string[] => {
    expect("(");
    const labels: string[] = [];
    while (peek()?.text !== ")") {
      const t = next();
      if (t.kind !== "id") throw new Error(`expected a label, got "${t.text}"`);
      labels.push(t.text);
      if (peek()?.text === ",") next();
    }
    expect(")");
    return labels;
  };

  const comparison = (): Node => {
    const lhs = additive();
    const t = peek();
    if (t?.kind === "op" && comparisons.has(t.text)) {
      next();
      if (peek()?.text === "bool") throw new Error("unsupported: bool modifier");
      return { t: "binary", op: t.text, lhs, rhs: additive() };
    }
    return lhs;
  };
  const additive = (): Node => {
    let lhs = multiplicative();
    while (peek()?.kind === "op" && (peek()?.text === "+" || peek()?.text === "-")) {
      const op = next().text;
      lhs = { t: "binary", op, lhs, rhs: multiplicative() };
    }
    return lhs;
  };
  const multiplicative = (): Node => {
    let lhs = primary();
    while (peek()?.kind === "op" && (peek()?.text === "*" || peek()?.text === "/")) {
      const op = next().text;
      lhs = { t: "binary", op, lhs, rhs: primary() };
    }
    return lhs;
  };
  const primary = (): Node => {
    const t = next();
    if (t.kind === "num") return { t: "num", value: Number(t.text) };
    if (t.kind === "op" && t.text === "(") {
      const inner = comparison();
      expect(")");
      return inner;
    }
    if (t.kind !== "id") throw new Error(`unsupported PromQL token "${t.text}" in "${src}"`);
    if (t.text === "sum") {
      let by: string[] | undefined;
      if (peek()?.text === "by") {
        next();
        by = labelList();
      } else if (peek()?.kind === "id") {
        throw new Error(`unsupported aggregation modifier "${peek()?.text}"`);
      }
      expect("(");
      const arg = comparison();
      expect(")");
      if (peek()?.text === "by") {
        if (by) throw new Error("two by clauses");
        next();
        by = labelList();
      } else if (peek()?.text === "without") {
        throw new Error("unsupported: without");
      }
      return by ? { t: "sum", by, arg } : { t: "sum", arg };
    }
    if (t.text === "time") {
      expect("(");
      expect(")");
      return { t: "time" };
    }
    if (t.text === "rate") {
      expect("(");
      const arg = primary();
      if (arg.t !== "selector" || arg.rangeS === undefined) throw new Error("rate() needs a range selector");
      expect(")");
      return { t: "rate", arg };
    }
    if (peek()?.text === "(") throw new Error(`unsupported PromQL function or aggregation "${t.text}"`);
    if (
      [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "and",
        "or",
        "unless",
        "bool",
      ].includes(t.text)
    ) {
      throw new Error(`unsupported PromQL keyword "${t.text}"`);
    }
    const matchers: Matcher[] = [];
    if (peek()?.text === "{") {
      next();
      while (peek()?.text !== "}") {
        const label = next();
        if (label.kind !== "id") throw new Error(`expected a label name, got "${label.text}"`);
        const op = next();
        if (!["=", "!=", "=~", "!~"].includes(op.text)) throw new Error(`bad matcher operator "${op.text}"`);
        const value = next();
        if (value.kind !== "str") throw new Error(`expected a string, got "${value.text}"`);
        matchers.push({ label: label.text, op: op.text as Matcher["op"], value: value.text });
        if (peek()?.text === ",") next();
      }
      expect("}");
    }
    const node: Node = { t: "selector", name: t.text, matchers };
    if (peek()?.kind === "dur") node.rangeS = durationSeconds(next().text);
    if (peek()?.kind === "id" && peek()?.text === "offset") throw new Error("unsupported: offset");
    return node;
  };

  const tree = comparison();
  if (at !== tokens.length) throw new Error(`unsupported PromQL after "${tokens[at]?.text}" in "${src}"`);
  return tree;
}

type Value = { kind: "scalar"; value: number } | { kind: "vector"; samples: Sample[] };
const LOOKBACK_S = 300;

function matches(labels: Labels, m: Matcher): boolean {
  const v = labels[m.label] ?? "";
  switch (m.op) {
    case "=":
      return v === m.value;
    case "!=":
      return v !== m.value;
    case "=~":
      return new RegExp(`^(?:${m.value})$`).test(v);
    case "!~":
      return !new RegExp(`^(?:${m.value})$`).test(v);
  }
}

function select(store: Store, node: Extract<Node, { t: "selector" }>) {
  return [...store.series.values()].filter(
    (s) => s.labels.__name__ === node.name && node.matchers.every((m) => matches(s.labels, m)),
  );
}

const withoutName = (labels: Labels): Labels => {
  const { __name__: _, ...rest } = labels;
  return rest;
};

function arith(op: string, a: number, b: number): number {
  switch (op) {
    case "+":
      return a + b;
    case "-":
      return a - b;
    case "*":
      return a * b;
    case "/":
      return a / b;
  }
  throw new Error(`not arithmetic: ${op}`);
}

function compare(op: string, a: number, b: number): boolean {
  switch (op) {
    case "<":
      return a < b;
    case ">":
      return a > b;
    case "<=":
      return a <= b;
    case ">=":
      return a >= b;
    case "==":
      return a === b;
    case "!=":
      return a !== b;
  }
  throw new Error(`not a comparison: ${op}`);
}

function evaluate(node: Node, store: Store, t: number): Value {
  switch (node.t) {
    case "num":
      return { kind: "scalar", value: node.value };
    case "time":
      return { kind: "scalar", value: t };
    case "selector": {
      if (node.rangeS !== undefined) throw new Error("a range selector outside rate()");
      const samples: Sample[] = [];
      for (const s of select(store, node)) {
        const last = s.points.filter(([pt]) => pt <= t && pt > t - LOOKBACK_S).at(-1);
        if (last) samples.push({ labels: s.labels, value: last[1] });
      }
      return { kind: "vector", samples };
    }
    case "rate": {
      const sel = node.arg as Extract<Node, { t: "selector" }>;
      const range = sel.rangeS as number;
      const samples: Sample[] = [];
      for (const s of select(store, sel)) {
        const pts = s.points.filter(([pt]) => pt <= t && pt > t - range);
        if (pts.length < 2) continue;
        // The increase, counter resets included; no extrapolation to the window's edges (which
        // changes the magnitude, never whether it is zero).
        let increase = 0;
        for (let i = 1; i < pts.length; i++) {
          const [, prev] = pts[i - 1] as [number, number];
          const [, cur] = pts[i] as [number, number];
          increase += cur >= prev ? cur - prev : cur;
        }
        samples.push({ labels: withoutName(s.labels), value: increase / range });
      }
      return { kind: "vector", samples };
    }
    case "sum": {
      const v = evaluate(node.arg, store, t);
      if (v.kind !== "vector") throw new Error("sum() of a scalar");
      const groups = new Map<string, Sample>();
      for (const s of v.samples) {
        const labels: Labels = {};
        for (const l of node.by ?? []) if (s.labels[l] !== undefined) labels[l] = s.labels[l];
        const key = signature(labels);
        const g = groups.get(key);
        if (g) g.value += s.value;
        else groups.set(key, { labels, value: s.value });
      }
      return { kind: "vector", samples: [...groups.values()] };
    }
    case "binary": {
      const lhs = evaluate(node.lhs, store, t);
      const rhs = evaluate(node.rhs, store, t);
      const isCmp = comparisons.has(node.op);
      if (lhs.kind === "scalar" && rhs.kind === "scalar") {
        if (isCmp) throw new Error("a comparison between scalars needs bool (unsupported)");
        return { kind: "scalar", value: arith(node.op, lhs.value, rhs.value) };
      }
      if (lhs.kind === "vector" && rhs.kind === "scalar") {
        return {
          kind: "vector",
          samples: isCmp
            ? lhs.samples.filter((s) => compare(node.op, s.value, rhs.value))
            : lhs.samples.map((s) => ({
                labels: withoutName(s.labels),
                value: arith(node.op, s.value, rhs.value),
              })),
        };
      }
      if (lhs.kind === "scalar" && rhs.kind === "vector") {
        return {
          kind: "vector",
          samples: isCmp
            ? rhs.samples.filter((s) => compare(node.op, lhs.value, s.value))
            : rhs.samples.map((s) => ({
                labels: withoutName(s.labels),
                value: arith(node.op, lhs.value, s.value),
              })),
        };
      }
      if (lhs.kind === "vector" && rhs.kind === "vector") {
        const right = new Map<string, Sample>();
        for (const s of rhs.samples) {
          const key = signature(s.labels, true);
          if (right.has(key)) throw new Error("many-to-many matching (unsupported)");
          right.set(key, s);
        }
        const seen = new Set<string>();
        const out: Sample[] = [];
        for (const s of lhs.samples) {
          const key = signature(s.labels, true);
          if (seen.has(key)) throw new Error("many-to-many matching (unsupported)");
          seen.add(key);
          const r = right.get(key);
          if (!r) continue;
          if (isCmp) {
            if (compare(node.op, s.value, r.value)) out.push(s);
          } else {
            out.push({ labels: withoutName(s.labels), value: arith(node.op, s.value, r.value) });
          }
        }
        return { kind: "vector", samples: out };
      }
      throw new Error("unreachable");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The rendered rules, and a virtual timeline of scrapes of a real Metrics.

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
}

const STEP_S = 30;

class Timeline {
  readonly metrics = new Metrics({ version: "test", revision: "test" });
  readonly store = new Store();
  t = 1_800_000_000; // a fixed virtual epoch (seconds)

  /** Advances `seconds` in 30 s steps, calling `each` before every scrape. */
  async run(seconds: number, each: (t: number) => void = () => {}): Promise<void> {
    for (let s = 0; s < seconds; s += STEP_S) {
      this.t += STEP_S;
      each(this.t);
      this.store.add(this.t, parseExposition(await this.metrics.registry.metrics()));
    }
  }

  /** The label sets the rule fires with now: its expression true at every step of its `for`. */
  firing(rule: AlertRule): Labels[] {
    const tree = parsePromQL(rule.expr);
    const forS = rule.for ? durationSeconds(rule.for) : 0;
    let alive: Map<string, Labels> | undefined;
    for (let at = this.t - forS; at <= this.t; at += STEP_S) {
      const v = evaluate(tree, this.store, at);
      if (v.kind !== "vector") throw new Error(`${rule.alert}: the expression is not a vector`);
      const now = new Map(v.samples.map((s) => [signature(s.labels, true), withoutName(s.labels)]));
      alive = alive ? new Map([...alive].filter(([k]) => now.has(k))) : now;
    }
    return [...(alive ?? new Map()).values()];
  }
}

let rules: AlertRule[] = [];
const rule = (name: string): AlertRule => {
  const r = rules.find((x) => x.alert === name);
  if (!r) throw new Error(`the chart has no alert ${name}`);
  return r;
};

beforeAll(async () => {
  const helm =
    execFileSync("bash", [`${root}hack/helm/build.sh`], { encoding: "utf8" })
      .trim()
      .split("\n")
      .at(-1) ?? "";
  const { stdout } = await run(helm, [
    "template",
    "ghat",
    `${root}charts/ghat`,
    "--namespace",
    "ghat-system",
    "--kube-version",
    "1.34.4",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--show-only",
    "templates/prometheusrule.yaml",
  ]);
  const [doc] = parseAllDocuments(stdout).map(
    (d) => d.toJS() as { kind: string; spec: { groups: { rules: AlertRule[] }[] } },
  );
  expect(doc?.kind).toBe("PrometheusRule");
  rules = (doc?.spec.groups ?? []).flatMap((g) => g.rules);
}, 600_000);

describe("the evaluator", () => {
  it("refuses PromQL it cannot evaluate instead of guessing", () => {
    for (const expr of [
      "increase(ghat_token_refreshes_total[15m]) > 0",
      "sum without (result) (ghat_token_refreshes_total)",
      "max by (result) (ghat_token_refreshes_total)",
      "ghat_token_refreshes_total offset 5m",
      "ghat_leader and ghat_leader",
      "ghat_leader / on (pod) ghat_leader",
      "ghat_leader > bool 0",
      "histogram_quantile(0.9, ghat_reconcile_duration_seconds_bucket)",
      "rate(ghat_token_refreshes_total[1h30m])",
      "ghat_leader unless ghat_leader",
      "1 < 2",
    ]) {
      expect(() => evaluate(parsePromQL(expr), new Store(), 0), expr).toThrow();
    }
  });

  it("parses every rule the chart renders", () => {
    expect(rules.length).toBeGreaterThan(0);
    for (const r of rules) expect(() => parsePromQL(r.expr), r.alert).not.toThrow();
  });

  it("has a scenario below for every alert in the chart", () => {
    expect(rules.map((r) => r.alert).sort()).toEqual([
      "GhatRateLimitLow",
      "GhatRefreshFailing",
      "GhatTokenNearExpiry",
    ]);
  });
});

describe("GhatRefreshFailing", () => {
  it('excludes "success" and "shared" in the chart\'s expression', () => {
    expect(rule("GhatRefreshFailing").expr).toMatch(/result!~"success\|shared"/);
  });

  it("does not fire while every refresh is a success or a shared token", async () => {
    const tl = new Timeline();
    await tl.run(45 * 60, () => {
      tl.metrics.refreshes.inc({ result: "success" });
      tl.metrics.refreshes.inc({ result: "shared" }, 3);
    });
    expect(tl.firing(rule("GhatRefreshFailing"))).toEqual([]);
    // The expression before the fix fired on these very samples (shared is not a failure).
    expect(
      tl.firing({
        ...rule("GhatRefreshFailing"),
        expr: 'sum by (result) (rate(ghat_token_refreshes_total{result!="success"}[15m])) > 0',
      }),
    ).toEqual([{ result: "shared" }]);
  });

  it("fires, per failure reason, when refreshes keep failing for 15 minutes", async () => {
    const tl = new Timeline();
    await tl.run(10 * 60, () => tl.metrics.refreshes.inc({ result: "success" }));
    await tl.run(35 * 60, (t) => {
      tl.metrics.refreshes.inc({ result: "shared" });
      tl.metrics.refreshes.inc({ result: "GitHubUnavailable" });
      if (t % 120 === 0) tl.metrics.refreshes.inc({ result: "RateLimited" });
    });
    const firing = tl.firing(rule("GhatRefreshFailing"));
    expect(firing).toEqual(
      expect.arrayContaining([{ result: "GitHubUnavailable" }, { result: "RateLimited" }]),
    );
    expect(firing).toHaveLength(2);
  });

  it("does not fire for a failure that has not lasted its 15 minutes, and stops once failures stop", async () => {
    const tl = new Timeline();
    await tl.run(5 * 60, () => tl.metrics.refreshes.inc({ result: "success" }));
    await tl.run(10 * 60, () => tl.metrics.refreshes.inc({ result: "InvalidPrivateKey" }));
    expect(tl.firing(rule("GhatRefreshFailing"))).toEqual([]);
    await tl.run(20 * 60, () => tl.metrics.refreshes.inc({ result: "InvalidPrivateKey" }));
    expect(tl.firing(rule("GhatRefreshFailing"))).toEqual([{ result: "InvalidPrivateKey" }]);
    await tl.run(20 * 60, () => tl.metrics.refreshes.inc({ result: "success" }));
    expect(tl.firing(rule("GhatRefreshFailing"))).toEqual([]);
  });
});

describe("GhatTokenNearExpiry", () => {
  it("fires for the token whose Secret expires within the threshold, not for a fresh one", async () => {
    const tl = new Timeline();
    await tl.run(10 * 60, (t) => {
      tl.metrics.tokenExpiry.set({ namespace: "ci", name: "fresh" }, t + 3600);
      tl.metrics.tokenExpiry.set({ namespace: "ci", name: "stale" }, t + 120);
    });
    expect(tl.firing(rule("GhatTokenNearExpiry"))).toEqual([{ namespace: "ci", name: "stale" }]);
  });
});

describe("GhatRateLimitLow", () => {
  it("fires for the installation below the headroom, not for one above it", async () => {
    const tl = new Timeline();
    await tl.run(10 * 60, () => {
      tl.metrics.rateLimitRemaining.set({ installation: "1" }, 4000);
      tl.metrics.rateLimitLimit.set({ installation: "1" }, 5000);
      tl.metrics.rateLimitRemaining.set({ installation: "2" }, 50);
      tl.metrics.rateLimitLimit.set({ installation: "2" }, 5000);
    });
    expect(tl.firing(rule("GhatRateLimitLow"))).toEqual([{ installation: "2" }]);
  });
});
