/**
 * Reads Content-Type-style header values (media type, parameters) and decides which form
 * a body of that type takes in the audit record. Syntax: RFC 9110 §8.3.1 (media type) and §5.6.6
 * (parameters), https://www.rfc-editor.org/rfc/rfc9110#section-8.3.1
 */

export type BodyKind = 'json' | 'text' | 'multipart' | 'binary';

// `name=value` or `name="quoted \" value"` after a `;` (RFC 9110 §5.6.6).
const PARAMETER = /;\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g;

const TEXT_TYPES = new Set([
  'application/x-ndjson',
  'application/jsonl',
  'application/x-jsonlines',
  'application/x-www-form-urlencoded',
  'application/xml',
  'application/javascript',
]);

/** Lower-case `type/subtype` without parameters, or null. */
export function mediaType(contentType: string | null): string | null {
  if (contentType === null) return null;
  const semicolon = contentType.indexOf(';');
  const essence = (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
  return essence === '' ? null : essence;
}

/** A parameter of a header value such as Content-Type or Content-Disposition; `name` in lower case. */
export function headerParam(value: string | null, name: string): string | null {
  if (value === null) return null;
  for (const match of value.matchAll(PARAMETER)) {
    const raw = match[2];
    if (match[1]?.toLowerCase() !== name || raw === undefined) continue;
    const trimmed = raw.trim();
    return trimmed.startsWith('"') ? trimmed.slice(1, -1).replace(/\\(.)/g, '$1') : trimmed;
  }
  return null;
}

export function bodyKind(contentType: string | null): BodyKind {
  const type = mediaType(contentType);
  if (type === null) return 'binary';
  if (type === 'application/json' || type.endsWith('+json')) return 'json';
  if (type === 'multipart/form-data') return 'multipart';
  if (type.startsWith('text/') || type.endsWith('+xml') || TEXT_TYPES.has(type)) return 'text';
  return 'binary';
}
