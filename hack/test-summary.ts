/**
 * Prints the plain "N passed, N failed" line CI reads, from vitest's JSON reports plus the
 * static checks' result. Usage: node hack/test-summary.ts <checks-exit-code> <vitest.json>...
 * A report that is missing (its run crashed before writing it) counts as one failure.
 *
 * Above that line it names each failed test with the first lines of its error, so a CI log
 * that keeps only its tail still says what failed.
 */
import { existsSync, readFileSync } from "node:fs";

interface Assertion {
  status?: string;
  fullName?: string;
  title?: string;
  failureMessages?: string[];
}
interface FileResult {
  name?: string;
  status?: string;
  message?: string;
  assertionResults?: Assertion[];
}

const [checksCode = "0", ...reports] = process.argv.slice(2);
let passed = 0;
let failed = 0;
let skipped = 0;
const failures: string[] = [];
const firstLines = (text: string | undefined, n = 4): string =>
  (text ?? "")
    .replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g"), "")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .slice(0, n)
    .map((line) => `    ${line.slice(0, 300)}`)
    .join("\n");
for (const reportPath of reports.length > 0 ? reports : [".local/vitest-results.json"]) {
  if (!existsSync(reportPath)) {
    failed += 1;
    failures.push(`FAIL ${reportPath}: missing (the run crashed before writing it)`);
    continue;
  }
  const report = JSON.parse(readFileSync(reportPath, "utf8")) as {
    numPassedTests?: number;
    numFailedTests?: number;
    numPendingTests?: number;
    numTodoTests?: number;
    testResults?: FileResult[];
  };
  passed += report.numPassedTests ?? 0;
  // A file that fails before running any test (import error, failing hook) counts once.
  const brokenFiles = (report.testResults ?? []).filter(
    (f) => f.status === "failed" && (f.assertionResults ?? []).length === 0,
  );
  failed += (report.numFailedTests ?? 0) + brokenFiles.length;
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  const cwd = `${process.cwd()}/`;
  for (const file of report.testResults ?? []) {
    const where = (file.name ?? "?").replace(cwd, "");
    if (file.status === "failed" && (file.assertionResults ?? []).length === 0) {
      failures.push(`FAIL ${where}\n${firstLines(file.message)}`);
    }
    for (const test of file.assertionResults ?? []) {
      if (test.status !== "failed") continue;
      failures.push(
        `FAIL ${where} > ${test.fullName ?? test.title ?? "?"}\n${firstLines(test.failureMessages?.[0])}`,
      );
    }
  }
}
if (checksCode !== "0") {
  failed += 1;
  failures.push(`FAIL static checks (exit ${checksCode})`);
}
if (failures.length > 0) process.stdout.write(`\n--- failed\n${failures.join("\n")}\n\n`);
const tail = skipped > 0 ? `, ${skipped} skipped` : "";
process.stdout.write(`${passed} passed, ${failed} failed${tail}\n`);
process.exit(failed > 0 ? 1 : 0);
