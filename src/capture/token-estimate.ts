/**
 * Estimates the usage of an exchange upstream reported none for (a stream the client aborted,
 * a stream without `stream_options.include_usage`), from the captured request and output text,
 * with OpenAI's tokenizers (gpt-tokenizer: o200k_base, cl100k_base). The tokenizer is loaded
 * on first use only, so importing this module costs the proxy nothing.
 *
 * Chat input follows OpenAI's cookbook, "How to count tokens with tiktoken"
 * (https://cookbook.openai.com/examples/how_to_count_tokens_with_tiktoken): 3 tokens per
 * message, 1 more for a `name`, 3 priming the reply, and its formula for function tools.
 * What it cannot see it leaves out, so estimates run low: images, audio and files in the input,
 * and the reasoning tokens of reasoning models, which are billed as output but never streamed.
 */
import { countOrNull, isObject, type JsonObject } from './guards.ts';

export type EncodingName = 'o200k_base' | 'cl100k_base';

export interface Encoder {
  countTokens(text: string): number;
}

export interface EstimatedUsage {
  inputTokens: number | null;
  outputTokens: number | null;
  totalTokens: number | null;
  cachedTokens: null;
  reasoningTokens: null;
}

// cl100k_base: GPT-4 (not 4o, 4.1 or 4.5), GPT-3.5, the embeddings and the -002 base models;
// everything newer (gpt-4o, gpt-4.1, gpt-5, o-series, realtime, audio) and unknown models:
// o200k_base. The same split as tiktoken's model table (tiktoken/model.py).
const CL100K = /^(gpt-4(?![o.])|gpt-3\.5|gpt-35|text-embedding-|davinci-002|babbage-002)/;

export function encodingForModel(model: string | null): EncodingName {
  if (model === null) return 'o200k_base';
  let name = model.trim().toLowerCase();
  if (name.startsWith('ft:')) name = name.slice(3).split(':')[0] ?? '';
  return CL100K.test(name) ? 'cl100k_base' : 'o200k_base';
}

// Special-token text in user content (`<|endoftext|>`) is counted as the text it is, not refused.
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };
const encoders = new Map<EncodingName, Promise<Encoder>>();

/** The encoding, imported on first call and kept for the life of the process. */
export function loadEncoder(name: EncodingName): Promise<Encoder> {
  let encoder = encoders.get(name);
  if (encoder === undefined) {
    encoder = importEncoding(name).then((module) => ({
      countTokens: (text: string) => module.countTokens(text, PLAIN_TEXT),
    }));
    encoders.set(name, encoder);
    // A failed import is retried on the next call rather than remembered.
    encoder.catch(() => encoders.delete(name));
  }
  return encoder;
}

function importEncoding(name: EncodingName) {
  return name === 'cl100k_base' ? import('gpt-tokenizer/encoding/cl100k_base') : import('gpt-tokenizer/encoding/o200k_base');
}

/** Loads the model's encoding ahead of need (at start, when a policy prices or limits). */
export async function preloadTokenizer(model: string | null = null): Promise<void> {
  await loadEncoder(encodingForModel(model));
}

/**
 * Estimated usage for a token-billed operation, or null when nothing can be counted.
 * `requestBody` is the parsed JSON request; `outputText` the text the model produced.
 */
export async function estimateUsage(
  operation: string | null,
  model: string | null,
  requestBody: unknown,
  outputText: string | null,
): Promise<EstimatedUsage | null> {
  if (!ESTIMATED_OPERATIONS.has(operation ?? '')) return null;
  const encoder = await loadEncoder(encodingForModel(model));
  const inputTokens = estimateInputTokens(encoder, operation, model, requestBody);
  // Embeddings produce vectors, not tokens: their output is 0 once their input is counted.
  const embeddingsOutput = operation === 'embeddings' && inputTokens !== null ? 0 : null;
  const outputTokens = outputText === null ? embeddingsOutput : encoder.countTokens(outputText);
  if (inputTokens === null && outputTokens === null) return null;
  const totalTokens = inputTokens === null || outputTokens === null ? null : inputTokens + outputTokens;
  return { inputTokens, outputTokens, totalTokens, cachedTokens: null, reasoningTokens: null };
}

const ESTIMATED_OPERATIONS = new Set(['chat.completions', 'responses', 'completions', 'embeddings']);

export function estimateInputTokens(encoder: Encoder, operation: string | null, model: string | null, body: unknown): number | null {
  if (!isObject(body)) return null;
  switch (operation) {
    case 'chat.completions':
      return chatInputTokens(encoder, model, body);
    case 'responses':
      return responsesInputTokens(encoder, model, body);
    case 'completions':
      return textOrTokens(encoder, body.prompt);
    case 'embeddings':
      return textOrTokens(encoder, body.input);
    default:
      return null;
  }
}

const TOKENS_PER_MESSAGE = 3;
const TOKENS_PER_NAME = 1;
const REPLY_PRIMING = 3; // <|start|>assistant<|message|>

/** Chat Completions `messages` (+ `tools` / `functions`), as the cookbook counts them. */
export function chatInputTokens(encoder: Encoder, model: string | null, body: JsonObject): number | null {
  if (!Array.isArray(body.messages)) return null;
  let tokens = REPLY_PRIMING;
  for (const message of body.messages) {
    if (!isObject(message)) continue;
    tokens += TOKENS_PER_MESSAGE;
    for (const [key, value] of Object.entries(message)) {
      tokens += fieldTokens(encoder, key, value);
      if (key === 'name' && typeof value === 'string') tokens += TOKENS_PER_NAME;
    }
  }
  return tokens + toolTokens(encoder, model, functionsOf(body));
}

/** Responses `instructions` and `input` (a string or items), counted like chat messages. */
export function responsesInputTokens(encoder: Encoder, model: string | null, body: JsonObject): number | null {
  const input = body.input;
  let tokens = REPLY_PRIMING;
  if (typeof body.instructions === 'string') tokens += TOKENS_PER_MESSAGE + encoder.countTokens('system') + encoder.countTokens(body.instructions);
  if (typeof input === 'string') {
    tokens += TOKENS_PER_MESSAGE + encoder.countTokens('user') + encoder.countTokens(input);
  } else if (Array.isArray(input)) {
    for (const item of input) {
      if (!isObject(item)) continue;
      tokens += TOKENS_PER_MESSAGE;
      for (const [key, value] of Object.entries(item)) {
        if (key === 'type' || key === 'id' || key === 'status') continue;
        tokens += fieldTokens(encoder, key, value);
      }
    }
  } else if (typeof body.instructions !== 'string') {
    return null;
  }
  return tokens + toolTokens(encoder, model, functionsOf(body));
}

// A message field's tokens: strings as text; content parts by their text (images, audio and
// files are not seen); tool calls by function name and arguments.
function fieldTokens(encoder: Encoder, key: string, value: unknown): number {
  if (typeof value === 'string') return encoder.countTokens(value);
  if (!Array.isArray(value)) return 0;
  let tokens = 0;
  for (const part of value) {
    if (typeof part === 'string') tokens += encoder.countTokens(part);
    if (!isObject(part)) continue;
    if (typeof part.text === 'string') tokens += encoder.countTokens(part.text);
    if (typeof part.refusal === 'string') tokens += encoder.countTokens(part.refusal);
    if (key === 'tool_calls' && isObject(part.function)) {
      if (typeof part.function.name === 'string') tokens += encoder.countTokens(part.function.name);
      if (typeof part.function.arguments === 'string') tokens += encoder.countTokens(part.function.arguments);
    }
  }
  return tokens;
}

interface FunctionSpec {
  name: string;
  description: string;
  properties: JsonObject;
}

// Chat `tools: [{type: "function", function: {...}}]`, legacy `functions: [{...}]`, and the
// Responses API's flat `tools: [{type: "function", name, ...}]`.
function functionsOf(body: JsonObject): FunctionSpec[] {
  const list: unknown[] = [...listOf(body.tools), ...listOf(body.functions)];
  const specs: FunctionSpec[] = [];
  for (const entry of list) {
    if (!isObject(entry)) continue;
    const fn = isObject(entry.function) ? entry.function : entry;
    if (typeof fn.name !== 'string') continue;
    const parameters = isObject(fn.parameters) ? fn.parameters : {};
    specs.push({
      name: fn.name,
      description: typeof fn.description === 'string' ? fn.description : '',
      properties: isObject(parameters.properties) ? parameters.properties : {},
    });
  }
  return specs;
}

// The cookbook's `num_tokens_for_tools`: fixed costs per function, per property and per enum
// item, which differ between the gpt-4o and gpt-4/3.5 families only in the function's start.
function toolTokens(encoder: Encoder, model: string | null, functions: readonly FunctionSpec[]): number {
  if (functions.length === 0) return 0;
  const funcInit = encodingForModel(model) === 'cl100k_base' ? 10 : 7;
  const propInit = 3;
  const propKey = 3;
  const enumInit = -3;
  const enumItem = 3;
  const funcEnd = 12;
  let tokens = 0;
  for (const fn of functions) {
    tokens += funcInit + encoder.countTokens(`${fn.name}:${withoutFinalPeriod(fn.description)}`);
    const properties = Object.entries(fn.properties);
    if (properties.length > 0) tokens += propInit;
    for (const [name, property] of properties) {
      tokens += propKey;
      const spec = isObject(property) ? property : {};
      if (Array.isArray(spec.enum)) {
        tokens += enumInit;
        for (const item of spec.enum) tokens += enumItem + encoder.countTokens(String(item));
      }
      const type = typeof spec.type === 'string' ? spec.type : '';
      const description = typeof spec.description === 'string' ? spec.description : '';
      tokens += encoder.countTokens(`${name}:${type}:${withoutFinalPeriod(description)}`);
    }
  }
  return tokens + funcEnd;
}

function listOf(value: unknown): readonly unknown[] {
  return Array.isArray(value) ? (value as unknown[]) : [];
}

function withoutFinalPeriod(text: string): string {
  return text.endsWith('.') ? text.slice(0, -1) : text;
}

// Completions `prompt` and embeddings `input`: a string, strings, or already-tokenized arrays.
function textOrTokens(encoder: Encoder, value: unknown): number | null {
  if (typeof value === 'string') return encoder.countTokens(value);
  if (!Array.isArray(value)) return null;
  let tokens = 0;
  for (const item of value) {
    if (typeof item === 'string') tokens += encoder.countTokens(item);
    else if (countOrNull(item) !== null) tokens += 1;
    else if (Array.isArray(item)) tokens += item.length;
  }
  return tokens;
}
