import { describe, expect, it } from "vitest";
import { customResourceDefinitions } from "../../../src/api/crds.ts";

type Schema = {
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
};

function undocumented(node: Schema, path: string): string[] {
  const out: string[] = [];
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    if (!child.description) out.push(`${path}.${name}`);
    out.push(...undocumented(child, `${path}.${name}`));
  }
  if (node.items) out.push(...undocumented(node.items, `${path}[]`));
  if (typeof node.additionalProperties === "object")
    out.push(...undocumented(node.additionalProperties, `${path}{}`));
  return out;
}

describe("the generated CRDs", () => {
  const crds = customResourceDefinitions() as unknown as {
    spec: {
      names: { kind: string; shortNames?: string[] };
      versions: { schema: { openAPIV3Schema: Schema } }[];
    };
  }[];

  it("describe every field, so kubectl explain documents it", () => {
    for (const crd of crds) {
      const root = crd.spec.versions[0]?.schema.openAPIV3Schema;
      expect(undocumented(root?.properties?.spec ?? {}, `${crd.spec.names.kind}.spec`)).toEqual([]);
      expect(undocumented(root?.properties?.status ?? {}, `${crd.spec.names.kind}.status`)).toEqual([]);
    }
  });

  it("are structural: no additionalProperties beside properties", () => {
    const walk = (n: Schema): boolean =>
      !(n.properties && n.additionalProperties !== undefined) &&
      Object.values(n.properties ?? {}).every(walk) &&
      (n.items ? walk(n.items) : true);
    for (const crd of crds) expect(walk(crd.spec.versions[0]?.schema.openAPIV3Schema ?? {})).toBe(true);
  });

  it("give GitHubAppToken the short name ghat", () => {
    expect(crds.find((c) => c.spec.names.kind === "GitHubAppToken")?.spec.names.shortNames).toEqual(["ghat"]);
  });
});
