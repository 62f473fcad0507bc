import { appFinalizer, finalizer, type KubeWriter } from "../kube/kube.ts";

interface ObjectLike {
  metadata?: {
    name?: string;
    namespace?: string;
    finalizers?: string[];
    deletionTimestamp?: unknown;
  };
  spec?: { appRef?: { kind?: string; name?: string } };
}

export interface AppFinalizerDeps {
  app(namespace: string, name: string): unknown;
  tokens(): unknown[];
  kube: Pick<KubeWriter, "setAppFinalizer">;
  /**
   * Per App, the resourceVersion the last write was based on: until the cache shows a newer
   * version, the same write is not sent again (a burst of tokens makes one write, not one each).
   */
  written: Map<string, string>;
}

/** The queue key of a GitHubApp's finalizer check (token keys are plain `namespace/name`). */
export function appKey(namespace: string, name: string): string {
  return `GitHubApp:${namespace}/${name}`;
}

export function parseAppKey(key: string): { namespace: string; name: string } | undefined {
  if (!key.startsWith("GitHubApp:")) return undefined;
  const [namespace = "", name = ""] = key.slice("GitHubApp:".length).split("/");
  return { namespace, name };
}

/**
 * Keeps `ghat.dev/in-use` on a GitHubApp exactly while a GitHubAppToken that still has to be
 * revoked (it carries ghat's own finalizer) uses it. When a namespace is deleted as a whole,
 * Kubernetes deletes the App with the tokens; the finalizer keeps the App, and with it the
 * endpoint, CA bundle and proxy every token was minted through, until each token is revoked.
 */
export async function reconcileAppFinalizer(
  d: AppFinalizerDeps,
  namespace: string,
  name: string,
): Promise<void> {
  const app = d.app(namespace, name) as
    | (ObjectLike & { metadata?: { resourceVersion?: string } })
    | undefined;
  const id = `${namespace}/${name}`;
  if (!app) {
    d.written.delete(id);
    return;
  }
  const version = app.metadata?.resourceVersion ?? "";
  if (d.written.get(id) === version) return;
  const finalizers = app.metadata?.finalizers ?? [];
  const has = finalizers.includes(appFinalizer);
  const used = (d.tokens() as ObjectLike[]).some(
    (t) =>
      t.metadata?.namespace === namespace &&
      (t.spec?.appRef?.kind ?? "GitHubApp") === "GitHubApp" &&
      t.spec?.appRef?.name === name &&
      (t.metadata.finalizers ?? []).includes(finalizer),
  );
  if (used && !has && app.metadata?.deletionTimestamp === undefined) {
    await d.kube.setAppFinalizer(namespace, name, true);
    d.written.set(id, version);
  } else if (!used && has) {
    await d.kube.setAppFinalizer(namespace, name, false, finalizers);
    d.written.set(id, version);
  }
}
