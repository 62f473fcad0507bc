/** What the simulator answers to one request; the server turns it into HTTP. */
export type Reply =
  | { kind: "answer"; status: number; body?: unknown; headers?: Record<string, string> }
  /** Destroy the connection without answering. */
  | { kind: "reset" };

/** Who a GitHub request concerned, for accounting. */
export interface Concerned {
  route: string;
  appId?: number | undefined;
  installationId?: number | undefined;
}

export function answer(status: number, body?: unknown, headers?: Record<string, string>): Reply {
  return { kind: "answer", status, body, ...(headers ? { headers } : {}) };
}
