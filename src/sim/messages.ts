/**
 * GitHub's error messages, verbatim (shared GITHUB_API.md). Clients match them by substring,
 * so they must not drift.
 */
export const messages = {
  notFound: "Not Found",
  movedPermanently: "Moved Permanently",
  badCredentials: "Bad credentials",
  jwtDecode: "A JSON web token could not be decoded",
  integrationNotFound: "Integration not found",
  expInvalid:
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
  expTooFar: "'Expiration time' claim ('exp') is too far in the future",
  iatInvalid:
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
  suspended: "This installation has been suspended",
  parse: "Problems parsing JSON",
  permission: "The permissions requested are not granted to this installation.",
  level: "The level of access for permissions requested are not granted to this installation.",
  repository:
    "There is at least one repository that does not exist or is not accessible to the parent installation.",
  /** (unverified) GitHub's wording is not documented; it names the maximum. */
  tooManyRepositories: "The maximum number of repositories that can be requested is 500.",
  secondaryRateLimit:
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
  primaryRateLimit: (installationId: number) =>
    `API rate limit exceeded for installation ID ${installationId}.`,
  /** 403 while a new token's scoped permissions are not replicated yet. */
  notAccessible: "Resource not accessible by integration",
  serverError: "Server Error",
} as const;

export const docsUrl = "https://docs.github.com/rest";
export const rateLimitDocsUrl =
  "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";

/** GitHub's JSON error body. */
export interface ErrorBody {
  message: string;
  documentation_url: string;
  status: string;
}

export function errorBody(status: number, message: string, documentationUrl: string = docsUrl): ErrorBody {
  return { message, documentation_url: documentationUrl, status: String(status) };
}
