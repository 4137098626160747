/**
 * Maps a request path to a bounded operation name (a metric label, so ids never leak into it)
 * and an operation to the OpenTelemetry GenAI `gen_ai.operation.name` and `openai.api.type`
 * (https://opentelemetry.io/docs/specs/semconv/gen-ai/openai/).
 */

import { hasDotSegment } from '../proxy/routes.ts';

// Resources whose second segment names the operation: `/v1/audio/speech` → `audio.speech`.
const GROUPS: ReadonlyMap<string, ReadonlySet<string>> = new Map([
  ['chat', new Set(['completions'])],
  ['audio', new Set(['transcriptions', 'translations', 'speech'])],
  ['images', new Set(['generations', 'edits', 'variations'])],
  ['fine_tuning', new Set(['jobs', 'checkpoints'])],
  ['realtime', new Set(['sessions', 'client_secrets', 'transcription_sessions', 'calls'])],
]);

// Stored-object routes told apart because they cost no tokens: `{base}/{id}` → `{base}.retrieve`
// (GET, POST-update or DELETE of one object: the HTTP method says which), and
// `{base}/{id}/{word}` or `{base}/{word}` → `{base}.{word}` for these words only.
const STORED: ReadonlyMap<string, ReadonlySet<string>> = new Map([
  ['chat.completions', new Set(['messages'])],
  ['responses', new Set(['input_items', 'cancel', 'input_tokens', 'compact'])],
]);

// An unknown resource name is used as-is only if it cannot be an id (ids carry digits or dashes).
const PLAIN_WORD = /^[a-z][a-z_]{0,39}$/;

// Requests go to a few paths again and again, so each path is parsed once. The memo is bounded
// (paths carrying ids are not): it starts afresh when full, and long paths are not kept.
const MEMO_ENTRIES = 1024;
const MEMO_PATH_CHARS = 256;
const memo = new Map<string, string | null>();

/**
 * `/v1/chat/completions` → `chat.completions`, `/v1/files/file-abc/content` → `files`,
 * `/v1/responses/resp_1/input_items` → `responses.input_items`; the `/v1` prefix is optional
 * and the query ignored. Null for `/`, `/v1` and first segments that look like ids.
 */
export function operationFromPath(path: string): string | null {
  const known = memo.get(path);
  if (known !== undefined) return known;
  const operation = parseOperation(path);
  if (path.length <= MEMO_PATH_CHARS) {
    if (memo.size >= MEMO_ENTRIES) memo.clear();
    memo.set(path, operation);
  }
  return operation;
}

function parseOperation(path: string): string | null {
  // The proxy refuses a path with a dot segment (routes.ts): it names no operation, whatever its words.
  const query = path.indexOf('?');
  if (hasDotSegment(query === -1 ? path : path.slice(0, query))) return null;
  const segments = pathSegments(path);
  const head = segments[0];
  if (head === undefined || !PLAIN_WORD.test(head)) return null;
  const second = segments[1];
  const group = GROUPS.get(head);
  if (group === undefined || second === undefined || !group.has(second)) {
    return storedOperation(head, segments.slice(1));
  }
  return storedOperation(`${head}.${second}`, segments.slice(2));
}

function pathSegments(path: string): string[] {
  const end = path.search(/[?#]/);
  const segments = (end === -1 ? path : path.slice(0, end)).split('/').filter((s) => s !== '');
  return segments[0] === 'v1' ? segments.slice(1) : segments;
}

function storedOperation(base: string, rest: readonly string[]): string {
  const words = STORED.get(base);
  if (words === undefined || rest.length === 0) return base;
  const word = rest.find((segment) => words.has(segment));
  if (word !== undefined) return `${base}.${word}`;
  return rest.length === 1 ? `${base}.retrieve` : base;
}

export type GenAiOperationName = 'chat' | 'text_completion' | 'embeddings';

/** The GenAI semconv operation, for the inference operations only. */
export function genAiOperationName(operation: string | null): GenAiOperationName | null {
  switch (operation) {
    case 'chat.completions':
    case 'responses':
      return 'chat';
    case 'completions':
      return 'text_completion';
    case 'embeddings':
      return 'embeddings';
    default:
      return null;
  }
}

export type OpenAIApiType = 'chat_completions' | 'responses';

export function openaiApiType(operation: string | null): OpenAIApiType | null {
  if (operation === 'chat.completions') return 'chat_completions';
  return operation === 'responses' ? 'responses' : null;
}
