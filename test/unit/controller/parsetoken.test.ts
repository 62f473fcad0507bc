import { describe, expect, it } from "vitest";
import type { KeyRecord } from "../../../src/controller/memory.ts";
import { parseToken } from "../../../src/controller/reconcile.ts";

const raw = (generation: number, spec: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  apiVersion: "ghat.dev/v1alpha1",
  kind: "GitHubAppToken",
  metadata: { name: "a", namespace: "team", uid: "u1", generation },
  spec,
  ...extra,
});
const spec = { appRef: { name: "app" }, installation: { owner: "acme" }, secrets: [{ name: "a-token" }] };

describe("parseToken", () => {
  it("takes the spec from the last parse while uid and generation stay, and parses it again when either changes", () => {
    const first = parseToken(raw(1, spec), undefined);
    expect(first.success).toBe(true);
    if (!first.success) return;
    // Defaults are filled in by the parse.
    expect(first.data.spec.secrets[0]?.format).toBe("token");
    const record: KeyRecord = {
      failures: 0,
      revokeAttempts: 0,
      spec: { uid: "u1", generation: 1, parsed: first.data.spec },
    };
    // A status write: same generation, the same parsed spec, the new status.
    const again = parseToken(raw(1, spec, { status: { observedGeneration: 1 } }), record);
    expect(again.success && again.data.spec).toBe(first.data.spec);
    expect(again.success && again.data.status).toEqual({ observedGeneration: 1 });
    // A new generation or a new object (same name, new uid) is parsed from its own spec.
    const changed = { ...spec, installation: { owner: "other" } };
    const next = parseToken(raw(2, changed), record);
    expect(next.success && next.data.spec.installation).toEqual({ owner: "other" });
    const recreated = parseToken(
      { ...raw(1, changed), metadata: { name: "a", uid: "u2", generation: 1 } },
      record,
    );
    expect(recreated.success && recreated.data.spec.installation).toEqual({ owner: "other" });
  });

  it("reports a bad status or spec with paths from the object's root", () => {
    const record: KeyRecord = { failures: 0, revokeAttempts: 0 };
    const ok = parseToken(raw(1, spec), undefined);
    if (ok.success) record.spec = { uid: "u1", generation: 1, parsed: ok.data.spec };
    const badStatus = parseToken(raw(1, spec, { status: { failures: "many" } }), record);
    expect(badStatus.success).toBe(false);
    expect(badStatus.error?.issues[0]?.path).toEqual(["status", "failures"]);
    const badSpec = parseToken(raw(2, { ...spec, secrets: [] }), record);
    expect(badSpec.error?.issues[0]?.path).toEqual(["spec", "secrets"]);
  });
});
