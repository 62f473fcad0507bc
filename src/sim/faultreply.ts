import type { TerminalFault } from "./faults.ts";
import { errorBody, messages, rateLimitDocsUrl } from "./messages.ts";
import { rateLimitHeaders } from "./ratelimit.ts";
import { answer, type Reply } from "./reply.ts";
import type { Route } from "./routes.ts";

/** The answer an injected fault gives instead of the operation's. */
export function applyFault(
  fault: TerminalFault,
  route: Route,
  installationId: number | undefined,
  nowMs: number,
): Reply {
  switch (fault.kind) {
    case "reset":
      return { kind: "reset" };
    case "status": {
      const message = fault.message ?? (fault.status >= 500 ? messages.serverError : "Injected fault");
      return answer(fault.status, errorBody(fault.status, message, route.documentationUrl));
    }
    case "primaryRateLimit": {
      const status = fault.status ?? 403;
      const reset = fault.resetAt ?? Math.ceil(nowMs / 1000) + (fault.resetInSeconds ?? 60);
      const message =
        installationId === undefined ? "API rate limit exceeded." : messages.primaryRateLimit(installationId);
      return answer(
        status,
        errorBody(status, message, rateLimitDocsUrl),
        rateLimitHeaders(5000, 5000, reset),
      );
    }
    case "secondaryRateLimit": {
      const status = fault.status ?? 403;
      const headers: Record<string, string> =
        fault.retryAfterSeconds === undefined ? {} : { "retry-after": String(fault.retryAfterSeconds) };
      return answer(status, errorBody(status, messages.secondaryRateLimit, rateLimitDocsUrl), headers);
    }
  }
}
