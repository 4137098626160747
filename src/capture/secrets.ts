/**
 * What counts as a secret in what the proxy stores (audit records) and shows (spans), by rule:
 * a credential's *name* (headers, query parameters, JSON members, multipart fields) and an
 * OpenAI key's *shape* (`sk-…`, `ek_…`) wherever text is kept. Records and spans only: nothing here
 * touches what is forwarded.
 */
import { JSON_TEXT, type CapturedBody, type MultipartPart } from './body-types.ts';
import { AppError } from '../errors.ts';

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
/**
 * Words that are no credential after these: `Idempotency-Key`, `prompt_cache_key` name
 * identifiers; `Access-Control-Allow-Credentials` is a CORS flag.
 */
const NOT_SECRET_AFTER: Readonly<Record<string, ReadonlySet<string>>> = {
  key: new Set(['idempotency', 'cache']),
  credentials: new Set(['allow']),
};

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
  return words.some((word, i) => secretWord(word) && NOT_SECRET_AFTER[word]?.has(words[i - 1] ?? '') !== true);
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
 * the prefix, https://platform.openai.com/docs/api-reference/authentication) or a Realtime
 * ephemeral client secret (`ek_…`, https://platform.openai.com/docs/api-reference/realtime-sessions):
 * the prefix at the start of a token, then 20 or more key characters. Ordinary words rarely look
 * like that; to leave hyphenated slugs alone (`sk-learn-for-beginners-and-experts`), the run must
 * also hold a digit or a capital letter, which every real key (random characters) does.
 */
// A percent-encoded separator before it (`%20sk-…` in a query) starts a token too.
const KEY_SHAPE = /(?:(?<![A-Za-z0-9_-])|(?<=%[0-9A-Fa-f]{2}))(sk-|ek_)[A-Za-z0-9_-]{20,}/g;
const KEY_LIKE = /[A-Z0-9]/;
const MIN_KEY_LENGTH = 23;

/** The text with every OpenAI-shaped key replaced by `sk-[redacted]` (or `ek_[redacted]`). */
export function maskKeys(text: string): string {
  // Most header values are shorter than any key: a length test spares them the two searches.
  if (text.length < MIN_KEY_LENGTH || (text.indexOf('sk-') === -1 && text.indexOf('ek_') === -1)) return text;
  return text.replace(KEY_SHAPE, (key, prefix: string) => (KEY_LIKE.test(key.slice(3)) ? `${prefix}${REDACTED}` : key));
}

export function maskKeysOrNull(text: string | null): string | null {
  return text === null ? null : maskKeys(text);
}

// ---------- bodies ----------

// Bodies are walked, not first searched for names that might hold a secret: a search that misses
// no spelling (any case, escaped names) costs three times the walk, which looks each member name
// up in isSecretName's cache, each string over 22 characters up with a native search, and skips
// numbers (embedding vectors) outright.

// chat.completion logprobs (https://platform.openai.com/docs/api-reference/chat/object): each
// entry's `token` is generated text beside its `logprob`, not a credential.
function isLogprobEntry(object: Record<string, unknown>, name: string): boolean {
  return name === 'token' && Object.hasOwn(object, 'logprob');
}

/**
 * Past this depth a JSON body is not walked but redacted as its text, which is how the journal
 * would write it anyway (journal-line.ts: MAX_DEPTH 100 counts the record and `request` too).
 */
const MAX_WALK_DEPTH = 98;

/** Thrown and caught inside this module only: the walk gives up on a body too deep. */
class TooDeep extends AppError {
  readonly code = 'json_too_deep';
  readonly status = 500;
}

/** What the current walk has seen (one walk at a time: it is synchronous). */
const walk = { sawSecretName: false };
const SK = Buffer.from('sk-');
const EK = Buffer.from('ek_');

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
      // Embedding vectors and token arrays: thousands of numbers, nothing to mask.
      if (typeof item === 'number') continue;
      const masked = maskJson(item, depth + 1);
      if (masked !== item) (out ??= value.slice())[i] = masked;
    }
    return out ?? value;
  }
  const object = value as Record<string, unknown>;
  let out: Record<string, unknown> | null = null;
  for (const name in object) {
    const item = object[name];
    const secret = isSecretName(name) && !isLogprobEntry(object, name);
    walk.sawSecretName ||= secret;
    if (typeof item === 'number' || typeof item === 'boolean' || item === null) continue;
    const masked = secret && typeof item === 'string' && item !== '' ? REDACTED : maskJson(item, depth + 1);
    // Defined, not assigned: a member named `__proto__` must stay a member.
    if (masked !== item) Object.defineProperty((out ??= { ...object }), name, { value: masked, enumerable: true, writable: true, configurable: true });
  }
  return out ?? object;
}

const LOGPROB_NEXT = /^\s*,\s*"logprob"/;
const MAX_NAME_LENGTH = 200;

/** The index of the quote that closes the JSON string whose content starts at `from`; -1 if it runs to the end. */
function stringEnd(text: string, from: number): number {
  for (let quote = text.indexOf('"', from); quote !== -1; quote = text.indexOf('"', quote + 1)) {
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return quote;
  }
  return -1;
}

const isSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

/**
 * Text (a JSON body cut at the cap is stored as text): the string value of each `"name":` member
 * whose name holds a credential becomes `[redacted]`, to the end of the text if the cut fell in
 * it; then keys are masked. Members are found from their colons by native search, not a regex pass.
 */
function maskText(text: string): string {
  let out = '';
  let kept = 0;
  for (let colon = text.indexOf(':'); colon !== -1; colon = text.indexOf(':', colon + 1)) {
    let close = colon - 1;
    while (isSpace(text.charCodeAt(close))) close--;
    if (text.charCodeAt(close) !== 0x22) continue;
    // A loop, not lastIndexOf (a runtime call, several times the cost for these short names).
    let open = close - 1;
    while (open >= kept && close - open <= MAX_NAME_LENGTH && text.charCodeAt(open) !== 0x22) open--;
    if (open < kept || text.charCodeAt(open) !== 0x22) continue;
    const name = text.slice(open + 1, close);
    if (!isSecretName(name)) continue;
    let start = colon + 1;
    while (isSpace(text.charCodeAt(start))) start++;
    if (text.charCodeAt(start) !== 0x22) continue;
    const end = stringEnd(text, start + 1);
    if (end === start + 1) continue;
    if (end !== -1 && name === 'token' && LOGPROB_NEXT.test(text.slice(end + 1, end + 33))) continue;
    out += `${text.slice(kept, start + 1)}${REDACTED}`;
    if (end === -1) return maskKeys(out);
    kept = end;
    colon = end;
  }
  return maskKeys(kept === 0 ? text : out + text.slice(kept));
}

function maskPart(part: MultipartPart): MultipartPart {
  if (!('value' in part)) return part;
  const value = part.value !== '' && isSecretName(part.name) ? REDACTED : maskText(part.value);
  return value === part.value ? part : { ...part, value };
}

function maskParts(parts: MultipartPart[]): MultipartPart[] {
  let out: MultipartPart[] | null = null;
  parts.forEach((part, i) => {
    const masked = maskPart(part);
    if (masked !== part) (out ??= parts.slice())[i] = masked;
  });
  return out ?? parts;
}

/**
 * The captured body as the record may store it: credential members and fields `[redacted]`,
 * OpenAI keys masked. The same object when nothing was found; a changed JSON body loses its
 * JSON_TEXT, so the journal writes the masked value rather than the bytes as captured.
 */
export function redactBody<B extends CapturedBody>(body: B): B {
  if (body.body === null || body.bodyEncoding === 'omitted') return body;
  let masked: unknown;
  try {
    switch (body.bodyEncoding) {
      case 'json':
        walk.sawSecretName = false;
        masked = maskJson(body.body, 0);
        // Unchanged, its text could still hold what the parsed value lost: of duplicate members
        // only the last is kept (`{"api_key":"…","api_key":""}`). Such a body is written from
        // its value, which the walk has vouched for.
        if (masked === body.body && (walk.sawSecretName || hasKeyPrefix(body[JSON_TEXT]))) return withoutText({ ...body });
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
    const text = body[JSON_TEXT]?.toString();
    return withoutText({ ...body, body: text === undefined ? null : maskText(text), bodyEncoding: text === undefined ? 'omitted' : 'text' });
  }
  return masked === body.body ? body : withoutText({ ...body, body: masked });
}

function hasKeyPrefix(text: Buffer | undefined): boolean {
  return text !== undefined && (text.includes(SK) || text.includes(EK));
}

function withoutText<B extends CapturedBody>(body: B): B {
  delete body[JSON_TEXT];
  return body;
}
