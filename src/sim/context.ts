import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import type { CallCounter } from "./counts.ts";
import type { Faults } from "./faults.ts";
import type { RateLimiter } from "./ratelimit.ts";
import type { SimState } from "./state.ts";
import type { TokenFactory, TokenFormat } from "./tokens.ts";

/** Settings fixed when the simulator starts. */
export interface SimSettings {
  tokenLifetimeSeconds: number;
  tokenFormat: TokenFormat;
  enterprise: boolean;
  iatLeewaySeconds: number;
  /** Accept the client id as `iss` (github.com since 2024; Enterprise Server 3.14+). */
  clientIdIssuer: boolean;
}

/** Everything a request handler needs, passed in rather than imported. */
export interface SimContext {
  state: SimState;
  faults: Faults;
  counter: CallCounter;
  rateLimiter: RateLimiter;
  tokens: TokenFactory;
  clock: Clock;
  settings: SimSettings;
  /** The simulator's time (clock + offset), ms. */
  now(): number;
  clockOffset(): number;
  setClockOffset(ms: number): void;
  /** Web base (`http://127.0.0.1:PORT`) and API base (the same, or `…/api/v3` in enterprise mode). */
  urls(): { web: string; api: string };
  log: Logger | undefined;
}
