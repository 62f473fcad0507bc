/**
 * Prints the plain "N passed, N failed" line CI reads, from vitest's JSON reports plus the
 * static checks' result. Usage: node hack/test-summary.ts <checks-exit-code> <vitest.json>...
 * A report that is missing (its run crashed before writing it) counts as one failure.
 */
import { existsSync, readFileSync } from "node:fs";

const [checksCode = "0", ...reports] = process.argv.slice(2);
let passed = 0;
let failed = 0;
let skipped = 0;
for (const reportPath of reports.length > 0 ? reports : [".local/vitest-results.json"]) {
  if (!existsSync(reportPath)) {
    failed += 1;
    continue;
  }
  const report = JSON.parse(readFileSync(reportPath, "utf8")) as {
    numPassedTests?: number;
    numFailedTests?: number;
    numPendingTests?: number;
    numTodoTests?: number;
    testResults?: { status?: string; assertionResults?: unknown[] }[];
  };
  passed += report.numPassedTests ?? 0;
  // A file that fails before running any test (import error, failing hook) counts once.
  const brokenFiles = (report.testResults ?? []).filter(
    (f) => f.status === "failed" && (f.assertionResults ?? []).length === 0,
  );
  failed += (report.numFailedTests ?? 0) + brokenFiles.length;
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
}
if (checksCode !== "0") failed += 1;
const tail = skipped > 0 ? `, ${skipped} skipped` : "";
process.stdout.write(`${passed} passed, ${failed} failed${tail}\n`);
process.exit(failed > 0 ? 1 : 0);
