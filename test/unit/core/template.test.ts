import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  maxTemplateOutput,
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
    const big = "{{ token }}".repeat(maxTemplateOutput);
    expect(() => renderTemplate(big, values)).toThrow(/larger than/);
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
