/**
 * What counts as a secret in what the proxy stores (audit records) and shows (spans), by rule:
 * a credential's *name* (headers, query parameters, JSON members, multipart fields) and an
 * OpenAI API key's *shape* (`sk-…`) wherever text is kept. Records and spans only: nothing here
 * touches what is forwarded.
 */
import { JSON_TEXT, type CapturedBody, type MultipartPart } from './record.ts';

export const REDACTED = '[redacted]';

// ---------- names ----------

/** A word of a name that names a credential, alone or as the end of a run-together word. */
const SECRET_WORDS = new Set([
  'key', 'apikey', 'token', 'secret', 'secrets', 'password', 'passwd', 'pwd', 'passphrase', 'auth', 'authorization',
  'authentication', 'credential', 'credentials', 'signature', 'sig', 'cookie', 'jwt', 'bearer',
]);
/**
 * Run-together words (`xapikey`, `accesstoken`, `clientsecret`, `awsaccesskeyid`) end with one of
 * these. `key` and `auth` alone are not among them: `hotkey`, `monkey`, `oauth` name no credential.
 */
const SECRET_ENDINGS = [
  'apikey', 'accesskey', 'accesskeyid', 'secretkey', 'privatekey', 'token', 'secret', 'secrets', 'password', 'passwd',
  'passphrase', 'authorization', 'credential', 'credentials', 'signature', 'cookie',
];
/** `key` after these words is an identifier, not a credential (`Idempotency-Key`, `prompt_cache_key`). */
const NOT_SECRET_BEFORE_KEY = new Set(['idempotency', 'cache']);

// Acronyms (`AWS` in `AWSAccessKeyId`), capitalised or lower-case words, digit runs: camelCase,
// snake_case, kebab-case and dotted names all split the same way.
const WORD = /[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+/g;

function secretWord(word: string): boolean {
  return SECRET_WORDS.has(word) || SECRET_ENDINGS.some((ending) => word.endsWith(ending));
}

/**
 * Whether a header, query parameter, JSON member or form field of this name holds a credential:
 * some word of it (see WORD) is in SECRET_WORDS or ends with one of SECRET_ENDINGS. Plurals of
 * counts stay visible: `max_tokens`, `x-ratelimit-remaining-tokens` have `tokens`, not `token`.
 */
function isSecretNameUncached(name: string): boolean {
  const words = (name.match(WORD) ?? []).map((w) => w.toLowerCase());
  return words.some((word, i) => secretWord(word) && !(word === 'key' && NOT_SECRET_BEFORE_KEY.has(words[i - 1] ?? '')));
}

// Names come from a small vocabulary (headers, API members), but clients choose them: the cache
// stops growing at this size rather than holding whatever names a client invents.
const NAME_CACHE_MAX = 2048;
const nameCache = new Map<string, boolean>();

export function isSecretName(name: string): boolean {
  let secret = nameCache.get(name);
  if (secret === undefined) {
    secret = isSecretNameUncached(name);
    if (nameCache.size < NAME_CACHE_MAX) nameCache.set(name, secret);
  }
  return secret;
}

// ---------- OpenAI key shapes ----------

/**
 * An OpenAI API key (`sk-…`, `sk-proj-…`, `sk-svcacct-…`, `sk-admin-…`; keys are base64url after
 * the prefix, https://platform.openai.com/docs/api-reference/authentication): `sk-` at the start
 * of a token, then 20 or more key characters. Ordinary words rarely look like that; to leave
 * hyphenated slugs alone (`sk-learn-for-beginners-and-experts`), the run must also hold a digit
 * or a capital letter, which every real key (random base64url) does.
 */
// A percent-encoded separator before it (`%20sk-…` in a query) starts a token too.
const KEY_SHAPE = /(?:(?<![A-Za-z0-9_-])|(?<=%[0-9A-Fa-f]{2}))sk-[A-Za-z0-9_-]{20,}/g;
const KEY_LIKE = /[A-Z0-9]/;
export const MASKED_KEY = `sk-${REDACTED}`;

/** The text with every OpenAI-shaped key replaced by `sk-[redacted]`. */
export function maskKeys(text: string): string {
  if (!text.includes('sk-')) return text;
  return text.replace(KEY_SHAPE, (key) => (KEY_LIKE.test(key.slice(3)) ? MASKED_KEY : key));
}

export function maskKeysOrNull(text: string | null): string | null {
  return text === null ? null : maskKeys(text);
}

// ---------- bodies ----------

// Built from the stems every secret name contains (see SECRET_WORDS and SECRET_ENDINGS), matched
// in any case, so a body it does not match has no secret name. `token` must not be followed by `s`
// (usage's `prompt_tokens` is in every response). `\u` because an escaped name (`"api\u005fkey"`)
// hides its stem from the bytes.
const STEMS = ['sk-', 'key', 'secret', 'passw', 'pwd', 'passphrase', 'auth', 'credential', 'sig', 'cookie', 'jwt', 'bearer'];
const anyCase = (stem: string): string => [...stem].map((c) => (/[a-z]/.test(c) ? `[${c}${c.toUpperCase()}]` : c)).join('');
const SUSPECT = new RegExp(`${[...STEMS.map(anyCase), `${anyCase('token')}(?!s)`].join('|')}|\\\\u`);

/** Cheap: whether `text` may hold a secret name or a key at all. */
export function mayHoldSecret(text: string): boolean {
  return SUSPECT.test(text);
}

// chat.completion logprobs (https://platform.openai.com/docs/api-reference/chat/object): each
// entry's `token` is generated text beside its `logprob`, not a credential.
function isLogprobEntry(object: Record<string, unknown>, name: string): boolean {
  return name === 'token' && Object.hasOwn(object, 'logprob');
}

/** Past this depth a JSON body is not walked: it is not stored (the journal could only write its text). */
const MAX_WALK_DEPTH = 100;

class TooDeep extends Error {}

/**
 * The JSON value with credential members' string values replaced by `[redacted]` and keys
 * masked in every other string; the same value (not a copy) if nothing changed.
 */
function maskJson(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return maskKeys(value);
  if (typeof value !== 'object' || value === null) return value;
  if (depth >= MAX_WALK_DEPTH) throw new TooDeep();
  if (Array.isArray(value)) {
    let out: unknown[] | null = null;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const masked = maskJson(item, depth + 1);
      if (masked !== item) (out ??= value.slice())[i] = masked;
    }
    return out ?? value;
  }
  const object = value as Record<string, unknown>;
  let out: Record<string, unknown> | null = null;
  for (const name of Object.keys(object)) {
    const item = object[name];
    const masked =
      typeof item === 'string' && item !== '' && isSecretName(name) && !isLogprobEntry(object, name) ? REDACTED : maskJson(item, depth + 1);
    // Defined, not assigned: a member named `__proto__` must stay a member.
    if (masked !== item) Object.defineProperty((out ??= { ...object }), name, { value: masked, enumerable: true, writable: true, configurable: true });
  }
  return out ?? object;
}

// A JSON member with a string value, in text (a JSON body cut at the cap is stored as text).
const TEXT_MEMBER = /"((?:[^"\\]|\\.){1,200})"(\s*:\s*)"((?:[^"\\]|\\.)*)"/g;
const LOGPROB_NEXT = /^\s*,\s*"logprob"/;

/** Text: keys masked, and the string values of credential members that look like JSON members. */
function maskText(text: string): string {
  const members = text.includes('"')
    ? text.replace(TEXT_MEMBER, (member, name: string, colon: string, value: string, offset: number) => {
        if (value === '' || !isSecretName(name)) return member;
        if (name === 'token' && LOGPROB_NEXT.test(text.slice(offset + member.length, offset + member.length + 32))) return member;
        return `"${name}"${colon}"${REDACTED}"`;
      })
    : text;
  return maskKeys(members);
}

function maskPart(part: MultipartPart): MultipartPart {
  if (!('value' in part)) return part;
  const value = part.value !== '' && isSecretName(part.name) ? REDACTED : maskText(part.value);
  return value === part.value ? part : { ...part, value };
}

function suspect(body: CapturedBody): boolean {
  const text = body[JSON_TEXT];
  if (text !== undefined) return mayHoldSecret(text.toString('latin1'));
  if (typeof body.body === 'string') return mayHoldSecret(body.body);
  // Parsed without its text (the proxy's own error bodies) or multipart: walked as it is.
  return true;
}

/**
 * The captured body as the record may store it: credential members and fields `[redacted]`,
 * OpenAI keys masked. The same object when nothing was found; a changed JSON body loses its
 * JSON_TEXT, so the journal writes the masked value rather than the bytes as captured.
 */
export function redactBody<B extends CapturedBody>(body: B): B {
  if (body.body === null || body.bodyEncoding === 'omitted' || !suspect(body)) return body;
  let masked: unknown;
  try {
    switch (body.bodyEncoding) {
      case 'json':
        masked = maskJson(body.body, 0);
        break;
      case 'text':
        masked = typeof body.body === 'string' ? maskText(body.body) : body.body;
        break;
      case 'multipart':
        masked = Array.isArray(body.body) ? maskParts(body.body as MultipartPart[]) : body.body;
        break;
    }
  } catch (err) {
    if (!(err instanceof TooDeep)) throw err;
    return withoutText({ ...body, body: null, bodyEncoding: 'omitted' });
  }
  return masked === body.body ? body : withoutText({ ...body, body: masked });
}

function maskParts(parts: MultipartPart[]): MultipartPart[] {
  let out: MultipartPart[] | null = null;
  parts.forEach((part, i) => {
    const masked = maskPart(part);
    if (masked !== part) (out ??= parts.slice())[i] = masked;
  });
  return out ?? parts;
}

function withoutText<B extends CapturedBody>(body: B): B {
  delete body[JSON_TEXT];
  return body;
}
