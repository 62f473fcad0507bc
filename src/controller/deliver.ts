import type { GitHubAppToken } from "../api/githubapptoken.ts";
import type { ConditionInput } from "../core/conditions.ts";
import { deliveryCondition } from "../core/delivery.ts";
import { toGhatError } from "../core/errors.ts";
import { tokenHash } from "../core/plan.ts";
import type { Logger } from "../log.ts";
import type { Rollouts } from "./rollout.ts";

/**
 * Runs the delivery check after a write (env-var readers, opt-in restarts when the token
 * changed) and returns the Delivered condition, or undefined when there is nothing to say.
 */
export async function deliver(
  delivery: Pick<Rollouts, "check">,
  key: string,
  token: GitHubAppToken,
  value: string,
  changed: boolean,
  log: Logger,
): Promise<Omit<ConditionInput, "type"> | undefined> {
  try {
    const report = await delivery.check({
      key,
      namespace: token.metadata.namespace ?? "",
      tokenName: token.metadata.name,
      generation: token.metadata.generation,
      secretNames: token.spec.secrets.map((s) => s.name),
      rollout: token.spec.rollout,
      tokenHash: tokenHash(value),
      changed,
    });
    return deliveryCondition(report);
  } catch (err) {
    const e = toGhatError(err);
    log.warn({ err: e }, "Failed to inspect workloads");
    return { status: "False", reason: "RestartFailed", message: `Could not read workloads: ${e.message}` };
  }
}
