import { hostname } from "node:os";
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  type V1Secret,
} from "@kubernetes/client-node";
import { apiVersion, group, version } from "../api/meta.ts";
import type { Clock } from "../clock.ts";
import { GhatError, redact } from "../core/errors.ts";
import type { DesiredSecret } from "../core/outputs.ts";

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
  applySecret(
    namespace: string,
    secret: DesiredSecret,
    owner: OwnerRef,
    observedType: string | undefined,
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
  readonly #objects: KubernetesObjectApi;
  readonly #core: CoreV1Api;
  readonly #custom: CustomObjectsApi;
  readonly #clock: Clock;
  readonly #instance: string;

  /** `instance` names this replica on the events it records (the pod name in a cluster). */
  constructor(kubeConfig: KubeConfig, clock: Clock, instance: string = process.env.POD_NAME || hostname()) {
    this.#objects = KubernetesObjectApi.makeApiClient(kubeConfig);
    this.#core = kubeConfig.makeApiClient(CoreV1Api);
    this.#custom = kubeConfig.makeApiClient(CustomObjectsApi);
    this.#clock = clock;
    // The API server refuses a reportingInstance longer than 128 characters.
    this.#instance = instance.slice(0, 128);
  }

  get core(): CoreV1Api {
    return this.#core;
  }

  get custom(): CustomObjectsApi {
    return this.#custom;
  }

  async applySecret(
    namespace: string,
    secret: DesiredSecret,
    owner: OwnerRef,
    observedType: string | undefined,
  ) {
    // A Secret's type is immutable: a format change that changes the type replaces the Secret.
    if (observedType !== undefined && observedType !== secret.type)
      await this.deleteSecret(namespace, secret.name);
    const body: V1Secret = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: {
        name: secret.name,
        namespace,
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
    await call(`apply Secret ${namespace}/${secret.name}`, () =>
      this.#objects.patch(body, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply),
    );
  }

  async deleteSecret(namespace: string, name: string) {
    await call(
      `delete Secret ${namespace}/${name}`,
      () => this.#core.deleteNamespacedSecret({ namespace, name }),
      [404],
    );
  }

  async applyTokenStatus(namespace: string, name: string, status: Record<string, unknown>) {
    const body = { apiVersion, kind: "GitHubAppToken", metadata: { name, namespace }, status };
    await call(`apply status of GitHubAppToken ${namespace}/${name}`, () =>
      this.#custom.patchNamespacedCustomObjectStatus(
        { group, version, namespace, plural: "githubapptokens", name, body, fieldManager, force: true },
        setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
      ),
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
    await call(`apply status of ${what}`, () =>
      kind === "GitHubApp"
        ? this.#custom.patchNamespacedCustomObjectStatus(
            { group, version, namespace, plural: "githubapps", name, body, fieldManager, force: true },
            setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
          )
        : this.#custom.patchClusterCustomObjectStatus(
            { group, version, plural: "clustergithubapps", name, body, fieldManager, force: true },
            setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
          ),
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
      await call(what, () =>
        this.#objects.patch(
          body,
          undefined,
          undefined,
          finalizerManager,
          true,
          PatchStrategy.ServerSideApply,
        ),
      );
      return;
    }
    // Removal is a JSON patch of metadata alone: it must work even when the spec no longer
    // passes validation (an apply re-validates the whole object). The test op makes a stale
    // list fail (422) instead of removing another controller's entry; the retry reads again.
    let list = current;
    if (list === undefined) {
      const obj = (await call(
        `read ${kind} ${namespace}/${name}`,
        () => this.#custom.getNamespacedCustomObject({ group, version, namespace, plural, name }),
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
      () =>
        this.#custom.patchNamespacedCustomObject(
          { group, version, namespace, plural, name, body },
          setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
        ),
      [404],
    );
  }

  async event(ref: ObjectRef, type: "Normal" | "Warning", reason: string, message: string) {
    const now = new Date(this.#clock.now());
    await call(`record event on ${ref.namespace}/${ref.name}`, () =>
      this.#core.createNamespacedEvent({
        namespace: ref.namespace,
        body: {
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
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      }),
    );
  }
}

/** Runs an API call, turning failures into a GhatError that carries the status and no secrets. */
export async function call<T>(
  what: string,
  fn: () => Promise<T>,
  ignore: readonly number[] = [],
): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    const status = err instanceof ApiException ? err.code : undefined;
    if (status !== undefined && ignore.includes(status)) return undefined;
    throw new GhatError("KubernetesError", `Failed to ${what}: ${describe(err)}`, {
      ...(status === undefined ? {} : { status }),
      cause: err,
    });
  }
}

function describe(err: unknown): string {
  if (err instanceof ApiException) {
    const body: unknown = err.body;
    let message = "";
    if (typeof body === "string") {
      try {
        const parsed: unknown = JSON.parse(body);
        if (parsed && typeof parsed === "object" && "message" in parsed) message = String(parsed.message);
      } catch {
        message = body.slice(0, 300);
      }
    } else if (body && typeof body === "object" && "message" in body) {
      message = String(body.message);
    }
    return redact(`HTTP ${err.code}${message ? `: ${message}` : ""}`);
  }
  return redact(err instanceof Error ? err.message : String(err));
}
