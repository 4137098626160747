/**
 * Query strings can carry credentials (`?api-key=` for Azure-style clients, `?access_token=`,
 * signed URLs): before a query reaches the audit record or a span, the value of every parameter
 * whose name holds a credential word (secrets.ts) is redacted, and OpenAI keys are masked.
 */
import { isSecretName, maskKeys, REDACTED } from './secrets.ts';

export { REDACTED };

/** The query with sensitive values replaced by REDACTED; null stays null. */
export function redactQuery(query: string | null): string | null {
  if (query === null) return null;
  const redacted = query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq === -1) return pair;
      let name = pair.slice(0, eq);
      try {
        name = decodeURIComponent(name.replaceAll('+', ' '));
      } catch {
        // keep the raw name
      }
      return isSecretName(name) ? `${pair.slice(0, eq)}=${REDACTED}` : pair;
    })
    .join('&');
  return maskKeys(redacted);
}
