/** Calls the simulator answered, as GitHub traffic (the admin endpoint is never counted). */
export interface Counts {
  total: number;
  /** By operation id ("unknown" for unrouted requests). */
  byRoute: Record<string, number>;
  /** By `"<operation id> <status>"`; status 0 is a connection reset. */
  byRouteStatus: Record<string, number>;
  byStatus: Record<string, number>;
  /** By App id, when the request named one (a valid JWT, or a token of that App). */
  byApp: Record<string, number>;
  /** By installation id, when the request concerned one. */
  byInstallation: Record<string, number>;
}

export interface CallRecord {
  route: string;
  status: number;
  appId?: number | undefined;
  installationId?: number | undefined;
}

export class CallCounter {
  #counts: Counts = emptyCounts();

  record({ route, status, appId, installationId }: CallRecord): void {
    const c = this.#counts;
    c.total++;
    bump(c.byRoute, route);
    bump(c.byRouteStatus, `${route} ${status}`);
    bump(c.byStatus, String(status));
    if (appId !== undefined) bump(c.byApp, String(appId));
    if (installationId !== undefined) bump(c.byInstallation, String(installationId));
  }

  /** A copy: later calls do not change it. */
  snapshot(): Counts {
    return structuredClone(this.#counts);
  }

  reset(): void {
    this.#counts = emptyCounts();
  }
}

function bump(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}

function emptyCounts(): Counts {
  return { total: 0, byRoute: {}, byRouteStatus: {}, byStatus: {}, byApp: {}, byInstallation: {} };
}
