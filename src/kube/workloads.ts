import type { KubeConfig } from "@kubernetes/client-node";
import { workloadKinds } from "../api/githubapptoken.ts";
import type { PodSpecLike, Workload } from "../core/delivery.ts";
import { call, fieldManager } from "./kube.ts";
import { KubeRest, mergePatch, pathOf } from "./rest.ts";

/** Reads and restarts apps/v1 workloads (only with the chart's workloads.enabled RBAC). */
export interface WorkloadApi {
  /** Deployments, StatefulSets and DaemonSets in a namespace; throws a 403 GhatError without RBAC. */
  list(namespace: string): Promise<Workload[]>;
  /** Merges annotations into spec.template.metadata: a rollout restart, as kubectl does it. */
  annotateTemplate(
    namespace: string,
    kind: Workload["kind"],
    name: string,
    annotations: Record<string, string>,
  ): Promise<void>;
}

interface Raw {
  kind?: string;
  metadata?: { name?: string };
  spec?: { template?: { metadata?: { annotations?: Record<string, string> }; spec?: PodSpecLike } };
}

export class KubeWorkloads implements WorkloadApi {
  readonly #rest: KubeRest;

  constructor(kubeConfig: KubeConfig) {
    this.#rest = KubeRest.for(kubeConfig);
  }

  async list(namespace: string): Promise<Workload[]> {
    const out: Workload[] = [];
    for (const kind of workloadKinds) {
      const list = await call(`list ${kind}s in ${namespace}`, () =>
        this.#rest.get<{ items?: unknown[] }>(pathOf("apps/v1", `${kind.toLowerCase()}s`, namespace)),
      );
      for (const item of (list?.items ?? []) as Raw[]) {
        out.push({
          kind,
          name: item.metadata?.name ?? "",
          templateAnnotations: item.spec?.template?.metadata?.annotations ?? {},
          podSpec: item.spec?.template?.spec,
        });
      }
    }
    return out;
  }

  async annotateTemplate(
    namespace: string,
    kind: Workload["kind"],
    name: string,
    annotations: Record<string, string>,
  ): Promise<void> {
    const body = { spec: { template: { metadata: { annotations } } } };
    await call(`restart ${kind} ${namespace}/${name}`, () =>
      this.#rest.patch(pathOf("apps/v1", `${kind.toLowerCase()}s`, namespace, name), mergePatch, body, {
        fieldManager,
      }),
    );
  }
}
