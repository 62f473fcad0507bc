import { z } from "zod";
import { operationIds } from "./routes.ts";

const rateLimitStatus = z.union([z.literal(403), z.literal(429)]);

/** One misbehaviour the simulator can show. */
export const faultSchema = z.discriminatedUnion("kind", [
  /** Answer this status (5xx, or anything) with a GitHub error body. */
  z.object({
    kind: z.literal("status"),
    status: z.number().int().min(400).max(599),
    message: z.string().optional(),
  }),
  /** Wait this long (on the simulator's clock) before handling the request. */
  z.object({ kind: z.literal("latency"), ms: z.number().int().nonnegative() }),
  /** Destroy the connection without an answer. */
  z.object({ kind: z.literal("reset") }),
  /** Primary rate limit: `x-ratelimit-remaining: 0` and a reset time (in N seconds, or at an epoch second). */
  z.object({
    kind: z.literal("primaryRateLimit"),
    status: rateLimitStatus.optional(),
    resetInSeconds: z.number().int().nonnegative().optional(),
    resetAt: z.number().int().positive().optional(),
  }),
  /** Secondary rate limit, with `retry-after` when given. */
  z.object({
    kind: z.literal("secondaryRateLimit"),
    status: rateLimitStatus.optional(),
    retryAfterSeconds: z.number().int().nonnegative().optional(),
  }),
  /**
   * A token minted by this request is not replicated yet: token routes answer `status`
   * (401 Bad credentials by default; 403 when scoped permissions lag) for `ms`.
   */
  z.object({
    kind: z.literal("replicationLag"),
    ms: z.number().int().nonnegative(),
    status: z.union([z.literal(401), z.literal(403)]).optional(),
  }),
]);

export const faultRuleSchema = z.object({
  /** An operation id (see routes.ts) or "*" for every GitHub route. */
  route: z.enum(["*", ...operationIds]),
  fault: faultSchema,
  /** Applies to the next N matching requests; unlimited when unset. */
  count: z.number().int().positive().optional(),
  /** Applies to each matching request with this probability (0..1); always when unset. */
  probability: z.number().min(0).max(1).optional(),
});

export type Fault = z.output<typeof faultSchema>;
export type FaultRule = z.input<typeof faultRuleSchema>;
export type LatencyFault = Extract<Fault, { kind: "latency" }>;
export type ReplicationLagFault = Extract<Fault, { kind: "replicationLag" }>;
export type TerminalFault = Exclude<Fault, LatencyFault | ReplicationLagFault>;

/** What applies to one request: delays to add, a lag for a minted token, at most one answer. */
export interface AppliedFaults {
  latencyMs: number;
  replicationLag: ReplicationLagFault | undefined;
  terminal: TerminalFault | undefined;
}

/**
 * The active fault rules, matched in the order they were added. Latency adds up; of the
 * other kinds, the first rule that fires wins and the rest are not consumed.
 */
export class Faults {
  #rules: (FaultRule & { left: number })[] = [];
  readonly #random: () => number;

  constructor(random: () => number = Math.random) {
    this.#random = random;
  }

  /** Adds a rule; throws a readable error when it is malformed. */
  add(rule: FaultRule): void {
    const parsed = faultRuleSchema.safeParse(rule);
    if (!parsed.success) throw new Error(`invalid fault rule:\n${z.prettifyError(parsed.error)}`);
    this.#rules.push({ ...parsed.data, left: parsed.data.count ?? Number.POSITIVE_INFINITY });
  }

  clear(): void {
    this.#rules = [];
  }

  /** Active rules; `count` is what is left of it. */
  list(): FaultRule[] {
    return this.#rules.map(({ left, count: _count, ...r }) => ({
      ...r,
      ...(Number.isFinite(left) ? { count: left } : {}),
    }));
  }

  /** The faults for one request to `route`, consuming their counts. */
  take(route: string): AppliedFaults {
    const applied: AppliedFaults = { latencyMs: 0, replicationLag: undefined, terminal: undefined };
    for (const rule of this.#rules) {
      if (rule.left <= 0 || (rule.route !== "*" && rule.route !== route)) continue;
      const fault = rule.fault;
      if (fault.kind === "replicationLag" && applied.replicationLag) continue;
      if (fault.kind !== "latency" && fault.kind !== "replicationLag" && applied.terminal) continue;
      if (rule.probability !== undefined && this.#random() >= rule.probability) continue;
      rule.left--;
      if (fault.kind === "latency") applied.latencyMs += fault.ms;
      else if (fault.kind === "replicationLag") applied.replicationLag = fault;
      else applied.terminal = fault;
    }
    this.#rules = this.#rules.filter((r) => r.left > 0);
    return applied;
  }
}
