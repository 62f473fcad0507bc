/** Faults the simulator can inject, per route (operation id) or for every route ("*"). */
export type Fault =
  | { kind: "status"; status: number; message?: string }
  | { kind: "latency"; ms: number }
  | { kind: "reset" }
  | { kind: "primaryRateLimit"; status?: 403 | 429; resetInSeconds?: number }
  | { kind: "secondaryRateLimit"; status?: 403 | 429; retryAfterSeconds?: number }
  | { kind: "replicationLag"; ms: number };

export interface FaultRule {
  route: string;
  fault: Fault;
  /** Applies to the next N matching requests; unlimited when unset. */
  count?: number;
  /** Applies to each matching request with this probability (0..1); always when unset. */
  probability?: number;
}

/** The active fault rules, consumed in order. */
export class Faults {
  #rules: (FaultRule & { left: number })[] = [];
  readonly #random: () => number;

  constructor(random: () => number = Math.random) {
    this.#random = random;
  }

  add(rule: FaultRule): void {
    this.#rules.push({ ...rule, left: rule.count ?? Number.POSITIVE_INFINITY });
  }

  clear(): void {
    this.#rules = [];
  }

  list(): FaultRule[] {
    return this.#rules.map(({ left, ...r }) => ({ ...r, ...(Number.isFinite(left) ? { count: left } : {}) }));
  }

  /** The faults that apply to one request to `route` (latency first, then at most one other). */
  take(route: string): Fault[] {
    const out: Fault[] = [];
    let terminal = false;
    for (const rule of this.#rules) {
      if (rule.left <= 0 || (rule.route !== "*" && rule.route !== route)) continue;
      const isLatency = rule.fault.kind === "latency";
      const isLag = rule.fault.kind === "replicationLag";
      if (!isLatency && !isLag && terminal) continue;
      if (rule.probability !== undefined && this.#random() >= rule.probability) continue;
      rule.left--;
      out.push(rule.fault);
      if (!isLatency && !isLag) terminal = true;
    }
    this.#rules = this.#rules.filter((r) => r.left > 0);
    return out;
  }
}
