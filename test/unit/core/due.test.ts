import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DueTimes } from "../../../src/core/due.ts";

type Op = { op: "set"; key: string; at: number } | { op: "delete"; key: string } | { op: "take"; at: number };

const key = fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h");
const time = fc.integer({ min: 0, max: 50 });
const ops = fc.array(
  fc.oneof(
    fc.record({ op: fc.constant("set" as const), key, at: time }),
    fc.record({ op: fc.constant("delete" as const), key }),
    fc.record({ op: fc.constant("take" as const), at: time }),
  ),
  { maxLength: 300 },
);

describe("DueTimes", () => {
  it("keeps the earliest time per key and hands keys out in time order", () => {
    const due = new DueTimes();
    due.set("late", 30);
    due.set("early", 10);
    due.set("late", 40);
    due.set("mid", 20);
    due.set("mid", 15);
    expect(due.get("late")).toBe(30);
    expect(due.next()).toBe(10);
    expect(due.takeDue(9)).toEqual([]);
    expect(due.takeDue(20)).toEqual(["early", "mid"]);
    expect(due.next()).toBe(30);
    due.delete("late");
    expect(due.next()).toBeUndefined();
    expect(due.size).toBe(0);
  });

  it("behaves like a map of earliest times, whatever the order of sets, deletes and takes", () => {
    fc.assert(
      fc.property(ops, (steps: Op[]) => {
        const due = new DueTimes();
        const model = new Map<string, number>();
        for (const s of steps) {
          if (s.op === "set") {
            const pending = model.get(s.key);
            const changed = pending === undefined || s.at < pending;
            if (changed) model.set(s.key, s.at);
            expect(due.set(s.key, s.at)).toBe(changed);
          } else if (s.op === "delete") {
            model.delete(s.key);
            due.delete(s.key);
          } else {
            const expected = [...model]
              .filter(([, at]) => at <= s.at)
              .sort((x, y) => x[1] - y[1])
              .map(([k]) => k);
            const taken = due.takeDue(s.at);
            // Keys due at the same time may come in any order; times never go backwards.
            expect([...taken].sort()).toEqual([...expected].sort());
            const times = taken.map((k) => model.get(k) as number);
            expect(times).toEqual([...times].sort((x, y) => x - y));
            for (const k of taken) model.delete(k);
          }
          expect(due.size).toBe(model.size);
          const earliest = Math.min(...model.values());
          expect(due.next()).toBe(model.size === 0 ? undefined : earliest);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("does not grow with keys rescheduled over and over", () => {
    const due = new DueTimes();
    for (let i = 0; i < 100_000; i++) {
      due.set(`k${i % 10}`, 1_000_000 - i);
      if (i % 7 === 0) due.delete(`k${i % 10}`);
    }
    expect(due.size).toBeLessThanOrEqual(10);
    // Every key set and deleted again: nothing is due, however late.
    for (let i = 0; i < 10; i++) due.delete(`k${i}`);
    expect(due.takeDue(Number.POSITIVE_INFINITY)).toEqual([]);
  });
});
