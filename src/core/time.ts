/** RFC 3339 in UTC with second precision, as GitHub writes expires_at and Kubernetes times. */
export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}
