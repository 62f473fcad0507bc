import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  maxExpressions,
  maxFiltersPerExpression,
  maxTemplateOutput,
  maxTemplateSource,
  renderTemplate,
  TemplateError,
  type TemplateValues,
} from "../../../src/core/template.ts";

const values: TemplateValues = {
  token: "ghs_abc.def_ghi",
  username: "x-access-token",
  host: "github.com",
  owner: "acme",
  expiresAt: "2026-11-24T13:00:00Z",
  apiUrl: "https://api.github.com",
};

describe("renderTemplate", () => {
  it("substitutes variables without any escaping", () => {
    expect(renderTemplate("<{{ token }}> & {{username}}@{{ host }}", values)).toBe(
      "<ghs_abc.def_ghi> & x-access-token@github.com",
    );
  });

  it("applies filters left to right", () => {
    expect(renderTemplate("{{ owner | upper | base64 }}", values)).toBe(
      Buffer.from("ACME").toString("base64"),
    );
    expect(renderTemplate("{{ token | json }}", values)).toBe('"ghs_abc.def_ghi"');
    expect(renderTemplate('{{ owner | default "x" }}', { ...values, owner: "" })).toBe("x");
  });

  it.each([
    ["{{ token ", '"{{" is not closed', 1, 1],
    ["a\nb {{ secret }}", 'unknown variable "secret"', 2, 6],
    ["{{ token | exec }}", 'unknown filter "exec"', 1, 12],
    ["{{ constructor }}", 'unknown variable "constructor"', 1, 4],
    ["{{ __proto__ }}", "unknown variable", 1, 4],
    // Found by the hostile-input suite: inherited properties are not filters.
    ["{{ token | constructor }}", 'unknown filter "constructor"', 1, 12],
    ["{{ token | toString }}", 'unknown filter "toString"', 1, 12],
    ["{{ token | __proto__ }}", 'unknown filter "__proto__"', 1, 12],
  ])("rejects %j with its position", (source, message, line, column) => {
    try {
      renderTemplate(source, values);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(TemplateError);
      expect((err as TemplateError).message).toContain(message);
      expect((err as TemplateError).line).toBe(line);
      expect((err as TemplateError).column).toBe(column);
    }
  });

  it("refuses to explode: output is bounded", () => {
    const big = "{{ token }}".repeat(maxExpressions);
    const huge = { ...values, token: "t".repeat(maxTemplateOutput / 16) };
    expect(() => renderTemplate(big, huge)).toThrow(/larger than/);
  });

  it("refuses the 58-pipe base64 bomb at once, before rendering anything", () => {
    const bomb = `{{ apiUrl${" | base64".repeat(58)} }}`;
    const started = performance.now();
    let error: unknown;
    try {
      renderTemplate(bomb, values);
    } catch (err) {
      error = err;
    }
    expect(performance.now() - started).toBeLessThan(100);
    expect(error).toBeInstanceOf(TemplateError);
    expect((error as TemplateError).message).toMatch(/line 1, column \d+: more than 8 filters/);
    // The error points at the ninth filter.
    expect((error as TemplateError).column).toBe(bomb.indexOf("base64") + 1 + 9 * maxFiltersPerExpression);
  });

  it("accepts eight filters in one expression", () => {
    const eight = `{{ owner${" | lower".repeat(maxFiltersPerExpression)} }}`;
    expect(renderTemplate(eight, values)).toBe("acme");
  });

  it("checks the size after every filter and names the filter that crossed the limit", () => {
    // 100 KiB grows past 256 KiB at the fourth base64 (×4/3 each); the rest never runs.
    const big = { ...values, apiUrl: "a".repeat(100 * 1024) };
    const source =
      "x\n  {{ apiUrl | base64 | base64 | base64 | base64 | base64 | base64 | base64 | base64 }}";
    try {
      renderTemplate(source, big);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(TemplateError);
      expect((err as TemplateError).message).toContain("after filter base64 is larger than");
      expect((err as TemplateError).line).toBe(2);
      expect((err as TemplateError).column).toBe((source.split("\n")[1] ?? "").indexOf("base64") + 1 + 3 * 9);
    }
  });

  it("refuses a variable that is already over the limit before any filter runs", () => {
    const big = { ...values, token: "t".repeat(maxTemplateOutput + 1) };
    expect(() => renderTemplate("{{ token | base64 }}", big)).toThrow(/line 1, column 4: the value of token/);
  });

  it("honours a smaller budget (what is left for this key of the Secret)", () => {
    expect(() => renderTemplate("{{ token }}", values, { maxOutput: 5 })).toThrow(/larger than 5 bytes/);
    expect(renderTemplate("{{ owner }}", values, { maxOutput: 4 })).toBe("acme");
  });

  it("refuses more than 64 expressions, pointing at the 65th", () => {
    const ok = "{{ owner }}".repeat(maxExpressions);
    expect(renderTemplate(ok, values)).toBe("acme".repeat(maxExpressions));
    try {
      renderTemplate(`${ok}\n{{ owner }}`, values);
      expect.unreachable();
    } catch (err) {
      expect((err as TemplateError).message).toContain("more than 64 {{ }} expressions");
      expect((err as TemplateError).line).toBe(2);
      expect((err as TemplateError).column).toBe(1);
    }
  });

  it("refuses a template source over 16 KiB", () => {
    expect(renderTemplate("x".repeat(maxTemplateSource), values)).toHaveLength(maxTemplateSource);
    expect(() => renderTemplate("x".repeat(maxTemplateSource + 1), values)).toThrow(
      /longer than 16384 characters/,
    );
  });

  it("never throws anything but a TemplateError and never evaluates code", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (source) => {
        try {
          const out = renderTemplate(source, values);
          expect(typeof out).toBe("string");
        } catch (err) {
          expect(err).toBeInstanceOf(TemplateError);
        }
      }),
      { numRuns: 500 },
    );
  });
});
