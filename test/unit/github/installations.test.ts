import { describe, expect, it } from "vitest";
import { GhatError } from "../../../src/core/errors.ts";
import {
  createInstallationResolver,
  type InstallationResolverOptions,
} from "../../../src/github/installations.ts";
import type { AppCredentials, Installation, InstallationRef } from "../../../src/github/types.ts";
import { FakeClock } from "../fakeclock.ts";
import { testKeyPair } from "./fakegithub.ts";

const app: AppCredentials = { appId: 1, key: testKeyPair().privateKey };

const installation = (id: number, login = "acme"): Installation => ({
  id,
  appId: 1,
  account: { login, type: "Organization" },
  repositorySelection: "all",
  permissions: { contents: "read" },
  suspendedAt: null,
});

/** A client whose answers the test controls; it counts every lookup. */
function fakeClient(answer: (ref: InstallationRef) => Promise<Installation> = async () => installation(7)) {
  const calls: InstallationRef[] = [];
  const ask = (ref: InstallationRef) => {
    calls.push(ref);
    return answer(ref);
  };
  const client: InstallationResolverOptions["client"] = {
    getInstallation: (_app, id) => ask({ id }),
    findInstallationByOwner: (_app, owner) => ask({ owner }),
    findInstallationByRepository: (_app, repository) => ask({ repository }),
  };
  return { client, calls };
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("createInstallationResolver", () => {
  it("by id: verifies the installation once, then trusts it until invalidated", async () => {
    const clock = new FakeClock();
    const { client, calls } = fakeClient();
    const resolver = createInstallationResolver({ client, clock });
    expect(await resolver.resolve(app, "a", { id: 7 })).toBe(7);
    clock.advance(24 * 3_600_000);
    expect(await resolver.resolve(app, "a", { id: 7 })).toBe(7);
    expect(calls).toEqual([{ id: 7 }]);
  });

  it.each<[string, InstallationRef]>([
    ["owner", { owner: "acme" }],
    ["repository", { repository: "acme/app" }],
  ])("by %s: caches the lookup for an hour by default, then looks up again", async (_case, ref) => {
    const clock = new FakeClock();
    const { client, calls } = fakeClient();
    const resolver = createInstallationResolver({ client, clock });
    await resolver.resolve(app, "a", ref);
    clock.advance(3_600_000 - 1);
    await resolver.resolve(app, "a", ref);
    expect(calls).toHaveLength(1);
    clock.advance(1);
    await resolver.resolve(app, "a", ref);
    expect(calls).toEqual([ref, ref]);
  });

  it("honours a shorter ttlMs", async () => {
    const clock = new FakeClock();
    const { client, calls } = fakeClient();
    const resolver = createInstallationResolver({ client, clock, ttlMs: 60_000 });
    await resolver.resolve(app, "a", { owner: "acme" });
    clock.advance(60_000);
    await resolver.resolve(app, "a", { owner: "acme" });
    expect(calls).toHaveLength(2);
  });

  it("treats owner and repository names case-insensitively, as GitHub does", async () => {
    const { client, calls } = fakeClient();
    const resolver = createInstallationResolver({ client, clock: new FakeClock() });
    await resolver.resolve(app, "a", { owner: "Acme" });
    await resolver.resolve(app, "a", { owner: "ACME" });
    await resolver.resolve(app, "a", { repository: "Acme/App" });
    await resolver.resolve(app, "a", { repository: "acme/app" });
    expect(calls).toEqual([{ owner: "Acme" }, { repository: "Acme/App" }]);
  });

  it("shares one request between concurrent identical lookups", async () => {
    const pending = deferred<Installation>();
    const { client, calls } = fakeClient(() => pending.promise);
    const resolver = createInstallationResolver({ client, clock: new FakeClock() });
    const both = Promise.all([
      resolver.resolve(app, "a", { owner: "acme" }),
      resolver.resolve(app, "a", { owner: "acme" }),
    ]);
    pending.resolve(installation(9));
    expect(await both).toEqual([9, 9]);
    expect(calls).toHaveLength(1);
  });

  it("never shares between two Apps, nor between two references", async () => {
    const { client, calls } = fakeClient();
    const resolver = createInstallationResolver({ client, clock: new FakeClock() });
    await Promise.all([
      resolver.resolve(app, "app-a", { owner: "acme" }),
      resolver.resolve(app, "app-b", { owner: "acme" }),
      resolver.resolve(app, "app-a", { repository: "acme/app" }),
      resolver.resolve(app, "app-a", { id: 7 }),
    ]);
    expect(calls).toHaveLength(4);
  });

  it("looks up again after invalidate (a mint answered 404)", async () => {
    let next = 7;
    const { client, calls } = fakeClient(async () => installation(next));
    const resolver = createInstallationResolver({ client, clock: new FakeClock() });
    expect(await resolver.resolve(app, "a", { owner: "acme" })).toBe(7);
    next = 8; // uninstalled and installed again under a new id
    resolver.invalidate("a", { owner: "acme" });
    expect(await resolver.resolve(app, "a", { owner: "acme" })).toBe(8);
    expect(calls).toHaveLength(2);
  });

  it("does not cache a failed lookup", async () => {
    let fail = true;
    const { client, calls } = fakeClient(async () => {
      if (fail) throw new GhatError("InstallationNotFound", "the App is not installed on account acme");
      return installation(7);
    });
    const resolver = createInstallationResolver({ client, clock: new FakeClock() });
    await expect(resolver.resolve(app, "a", { owner: "acme" })).rejects.toMatchObject({
      code: "InstallationNotFound",
    });
    fail = false;
    expect(await resolver.resolve(app, "a", { owner: "acme" })).toBe(7);
    expect(calls).toHaveLength(2);
  });

  it("keeps a lookup that was invalidated while in flight out of the cache", async () => {
    const first = deferred<Installation>();
    let answer: () => Promise<Installation> = () => first.promise;
    const { client, calls } = fakeClient(() => answer());
    const resolver = createInstallationResolver({ client, clock: new FakeClock() });
    const stale = resolver.resolve(app, "a", { owner: "acme" });
    resolver.invalidate("a", { owner: "acme" });
    answer = async () => installation(8);
    const fresh = resolver.resolve(app, "a", { owner: "acme" });
    first.resolve(installation(7));
    expect(await stale).toBe(7);
    expect(await fresh).toBe(8);
    expect(await resolver.resolve(app, "a", { owner: "acme" })).toBe(8);
    expect(calls).toHaveLength(2);
  });

  it("gives the whole installation too, from the same cache", async () => {
    const { client, calls } = fakeClient(async () => installation(7, "octo-org"));
    const resolver = createInstallationResolver({ client, clock: new FakeClock() });
    expect((await resolver.installation(app, "a", { id: 7 })).account.login).toBe("octo-org");
    expect(await resolver.resolve(app, "a", { id: 7 })).toBe(7);
    expect(calls).toHaveLength(1);
  });
});
