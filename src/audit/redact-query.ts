/**
 * Query strings can carry credentials (`?api-key=` for Azure-style clients, signed URLs): their
 * values are redacted before a query reaches the audit record or a span.
 */
export const REDACTED = '[redacted]';

const SENSITIVE_QUERY = new Set([
  'api-key', 'api_key', 'apikey', 'key', 'access_token', 'token', 'sig', 'signature', 'x-goog-signature', 'awsaccesskeyid',
]);

/** The query with sensitive values replaced by REDACTED; null stays null. */
export function redactQuery(query: string | null): string | null {
  if (query === null) return null;
  return query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq === -1) return pair;
      let name = pair.slice(0, eq);
      try {
        name = decodeURIComponent(name);
      } catch {
        // keep the raw name
      }
      return SENSITIVE_QUERY.has(name.toLowerCase()) ? `${pair.slice(0, eq)}=${REDACTED}` : pair;
    })
    .join('&');
}
