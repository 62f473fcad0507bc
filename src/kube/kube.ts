import { hostname } from "node:os";
import type { KubeConfig } from "@kubernetes/client-node";
import { apiVersion } from "../api/meta.ts";
import type { Clock } from "../clock.ts";
import { GhatError, redact, SecretExists } from "../core/errors.ts";
import type { DesiredSecret } from "../core/outputs.ts";
import { applyPatch, jsonPatch, KubeApiError, KubeRest, pathOf } from "./rest.ts";
import type { SecretView } from "./secrets.ts";

/** The only field manager ghat applies with. */
export const fieldManager = "ghat";
export const finalizer = "ghat.dev/revoke-token";
/**
 * On a GitHubApp while GitHubAppTokens use it: deleting a namespace as a whole must not take
 * the App (and so the endpoint, CA bundle and proxy the tokens were minted through) away
 * before those tokens are revoked.
 */
export const appFinalizer = "ghat.dev/in-use";
/** A separate field manager owns the finalizer, so applying status never touches it. */
export const finalizerManager = "ghat-finalizer";

export interface OwnerRef {
  kind: "GitHubAppToken";
  name: string;
  uid: string;
}

export interface ObjectRef {
  kind: string;
  name: string;
  namespace: string;
  uid?: string | undefined;
}

/** Everything ghat writes to the API server. The reconciler depends on this, not on client-node. */
export interface KubeWriter {
  /**
   * `createOnly`: the Secret is believed absent (never read); if one of that name exists after
   * all, nothing is written and a SecretExists error is thrown.
   */
  applySecret(
    namespace: string,
    secret: DesiredSecret,
    owner: OwnerRef,
    observedType: string | undefined,
    createOnly?: boolean,
  ): Promise<void>;
  deleteSecret(namespace: string, name: string): Promise<void>;
  applyTokenStatus(namespace: string, name: string, status: Record<string, unknown>): Promise<void>;
  /**
   * Adds or removes ghat's finalizer on a GitHubAppToken. `current` is the object's finalizer
   * list as cached; removal patches only metadata, whatever the spec holds.
   */
  setFinalizer(namespace: string, name: string, present: boolean, current?: string[]): Promise<void>;
  /** Adds or removes `ghat.dev/in-use` on a GitHubApp (the tokens using it are not yet revoked). */
  setAppFinalizer(namespace: string, name: string, present: boolean, current?: string[]): Promise<void>;
  event(ref: ObjectRef, type: "Normal" | "Warning", reason: string, message: string): Promise<void>;
}

/** The KubeWriter on a real API server: server-side apply for Secrets and status. */
export class KubeClient implements KubeWriter {
  readonly #rest: KubeRest;
  readonly #clock: Clock;
  readonly #instance: string;
  /**
   * Called as ghat starts to apply a Secret; what it returns is called once the apply is done,
   * with the Secret as the API server returned it, or with nothing when the apply failed.
   */
  onSecretWrite: ((namespace: string, name: string) => (written: SecretView | undefined) => void) | undefined;
  /** Called with a GitHubAppToken as the API server returned it from ghat's finalizer apply. */
  onTokenWritten:
    | ((token: { metadata?: { namespace?: string; name?: string; resourceVersion?: string } }) => void)
    | undefined;

  /** `instance` names this replica on the events it records (the pod name in a cluster). */
  constructor(kubeConfig: KubeConfig, clock: Clock, instance: string = process.env.POD_NAME || hostname()) {
    this.#rest = KubeRest.for(kubeConfig);
    this.#clock = clock;
    // The API server refuses a reportingInstance longer than 128 characters.
    this.#instance = instance.slice(0, 128);
  }

  get rest(): KubeRest {
    return this.#rest;
  }

  async applySecret(
    namespace: string,
    secret: DesiredSecret,
    owner: OwnerRef,
    observedType: string | undefined,
    createOnly = false,
  ) {
    // A Secret's type is immutable: a format change that changes the type replaces the Secret.
    if (observedType !== undefined && observedType !== secret.type)
      await this.deleteSecret(namespace, secret.name);
    const body = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: {
        name: secret.name,
        namespace,
        // A resourceVersion no object has: an apply that would create the Secret goes ahead (the
        // API server ignores it on create), one that would change an existing Secret fails
        // with 409. etcd's first revision is 1 and every write comes after it.
        ...(createOnly ? { resourceVersion: createOnlyResourceVersion } : {}),
        labels: secret.labels,
        annotations: secret.annotations,
        ownerReferences: [
          {
            apiVersion,
            kind: owner.kind,
            name: owner.name,
            uid: owner.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      type: secret.type,
      data: Object.fromEntries(
        Object.entries(secret.data).map(([k, v]) => [k, Buffer.from(v).toString("base64")]),
      ),
    };
    let written: SecretView | undefined;
    const done = this.onSecretWrite?.(namespace, secret.name);
    try {
      written = await this.#rest.patch<SecretView>(
        pathOf("v1", "secrets", namespace, secret.name),
        applyPatch,
        body,
        { fieldManager, force: "true" },
      );
    } catch (err) {
      if (createOnly && err instanceof KubeApiError && err.code === 409)
        throw new SecretExists(namespace, secret.name);
      throw callError(`apply Secret ${namespace}/${secret.name}`, err);
    } finally {
      done?.(written);
    }
  }

  async deleteSecret(namespace: string, name: string) {
    await call(
      `delete Secret ${namespace}/${name}`,
      () => this.#rest.delete(pathOf("v1", "secrets", namespace, name)),
      [404],
    );
  }

  async applyTokenStatus(namespace: string, name: string, status: Record<string, unknown>) {
    const body = { apiVersion, kind: "GitHubAppToken", metadata: { name, namespace }, status };
    await call(`apply status of GitHubAppToken ${namespace}/${name}`, () =>
      this.#rest.patch(pathOf(apiVersion, "githubapptokens", namespace, name, "status"), applyPatch, body, {
        fieldManager,
        force: "true",
      }),
    );
  }

  /** Server-side apply of a GitHubApp's (namespace set) or ClusterGitHubApp's status. */
  async applyAppStatus(
    kind: "GitHubApp" | "ClusterGitHubApp",
    namespace: string,
    name: string,
    status: Record<string, unknown>,
  ) {
    const metadata = kind === "GitHubApp" ? { name, namespace } : { name };
    const body = { apiVersion, kind, metadata, status };
    const what = kind === "GitHubApp" ? `${kind} ${namespace}/${name}` : `${kind} ${name}`;
    const path =
      kind === "GitHubApp"
        ? pathOf(apiVersion, "githubapps", namespace, name, "status")
        : pathOf(apiVersion, "clustergithubapps", undefined, name, "status");
    await call(`apply status of ${what}`, () =>
      this.#rest.patch(path, applyPatch, body, { fieldManager, force: "true" }),
    );
  }

  async setFinalizer(namespace: string, name: string, present: boolean, current?: string[]) {
    await this.#finalizer("GitHubAppToken", "githubapptokens", finalizer, namespace, name, present, current);
  }

  async setAppFinalizer(namespace: string, name: string, present: boolean, current?: string[]) {
    await this.#finalizer("GitHubApp", "githubapps", appFinalizer, namespace, name, present, current);
  }

  async #finalizer(
    kind: string,
    plural: string,
    value: string,
    namespace: string,
    name: string,
    present: boolean,
    current: string[] | undefined,
  ) {
    const what = `${present ? "add" : "remove"} finalizer on ${kind} ${namespace}/${name}`;
    if (present) {
      // Server-side apply treats metadata.finalizers as a set: this adds only ghat's entry and
      // never clobbers another controller's.
      const body = { apiVersion, kind, metadata: { name, namespace, finalizers: [value] } };
      const written = await call(what, () =>
        this.#rest.patch<{ metadata?: { namespace?: string; name?: string; resourceVersion?: string } }>(
          pathOf(apiVersion, plural, namespace, name),
          applyPatch,
          body,
          { fieldManager: finalizerManager, force: "true" },
        ),
      );
      if (written && kind === "GitHubAppToken") this.onTokenWritten?.(written);
      return;
    }
    // Removal is a JSON patch of metadata alone: it must work even when the spec no longer
    // passes validation (an apply re-validates the whole object). The test op makes a stale
    // list fail (422) instead of removing another controller's entry; the retry reads again.
    let list = current;
    if (list === undefined) {
      const obj = (await call(
        `read ${kind} ${namespace}/${name}`,
        () => this.#rest.get(pathOf(apiVersion, plural, namespace, name)),
        [404],
      )) as { metadata?: { finalizers?: string[] } } | undefined;
      if (!obj) return;
      list = obj.metadata?.finalizers ?? [];
    }
    const i = list.indexOf(value);
    if (i < 0) return;
    const body = [
      { op: "test", path: `/metadata/finalizers/${i}`, value },
      { op: "remove", path: `/metadata/finalizers/${i}` },
    ];
    await call(
      what,
      () => this.#rest.patch(pathOf(apiVersion, plural, namespace, name), jsonPatch, body),
      [404],
    );
  }

  async event(ref: ObjectRef, type: "Normal" | "Warning", reason: string, message: string) {
    const now = new Date(this.#clock.now());
    await call(`record event on ${ref.namespace}/${ref.name}`, () =>
      this.#rest.post(pathOf("v1", "events", ref.namespace), {
        metadata: { generateName: `${ref.name}.`, namespace: ref.namespace },
        involvedObject: {
          apiVersion,
          kind: ref.kind,
          name: ref.name,
          namespace: ref.namespace,
          ...(ref.uid ? { uid: ref.uid } : {}),
        },
        type,
        reason,
        message: redact(message).slice(0, 1024),
        source: { component: "ghat", host: this.#instance },
        reportingComponent: "ghat.dev/controller",
        reportingInstance: this.#instance,
        firstTimestamp: now.toISOString(),
        lastTimestamp: now.toISOString(),
        count: 1,
      }),
    );
  }
}

/** See KubeWriter.applySecret's createOnly. */
export const createOnlyResourceVersion = "1";

/** Runs an API call, turning failures into a GhatError that carries the status and no secrets. */
export async function call<T>(
  what: string,
  fn: () => Promise<T>,
  ignore: readonly number[] = [],
): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof KubeApiError && ignore.includes(err.code)) return undefined;
    throw callError(what, err);
  }
}

/** A failed API call as a GhatError that carries the status and no secrets. */
function callError(what: string, err: unknown): GhatError {
  const status = err instanceof KubeApiError ? err.code : undefined;
  return new GhatError("KubernetesError", `Failed to ${what}: ${describe(err)}`, {
    ...(status === undefined ? {} : { status }),
    cause: err,
  });
}

function describe(err: unknown): string {
  return redact(err instanceof Error ? err.message : String(err));
}
