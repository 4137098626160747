/**
 * Reads the OpenAI facts of an exchange from parsed (non-streamed) JSON: the request's model
 * and stream flag, and the response's id, model, finish reasons, usage and output text.
 * Shapes: https://platform.openai.com/docs/api-reference/chat/object,
 * https://platform.openai.com/docs/api-reference/responses/object
 */
import type { Usage } from './body-types.ts';
import { isObject, stringOrNull, type JsonObject } from './guards.ts';
import { OutputText } from './output-text.ts';
import { normalizeUsage } from './usage.ts';

export interface RequestFacts {
  requestModel: string | null;
  stream: boolean;
}

export interface ResponseFacts {
  responseModel: string | null;
  responseId: string | null;
  finishReasons: string[];
  usage: Usage | null;
  outputText: string | null;
}

// Bodies reaching here were already capped by the capture, so the text needs no cap of its own.
const UNCAPPED = Number.POSITIVE_INFINITY;

/**
 * Works on a JSON body, on `BodyCapture.fields` (top-level members found past the cap), and on
 * multipart text fields, where `stream` arrives as the string `"true"`.
 */
export function requestFactsFromJson(body: unknown): RequestFacts {
  if (!isObject(body)) return { requestModel: null, stream: false };
  return { requestModel: stringOrNull(body.model), stream: body.stream === true || body.stream === 'true' };
}

/** chat.completion, text_completion, response, embeddings list, transcription/translation. */
export function responseFactsFromJson(body: unknown): ResponseFacts {
  const facts: ResponseFacts = {
    responseModel: null,
    responseId: null,
    finishReasons: [],
    usage: null,
    outputText: null,
  };
  if (!isObject(body)) return facts;
  facts.responseModel = stringOrNull(body.model);
  facts.responseId = stringOrNull(body.id);
  facts.usage = normalizeUsage(body.usage);
  if (body.object === 'response') readResponse(body, facts);
  else if (Array.isArray(body.choices)) readChoices(body.choices, facts);
  else facts.outputText = stringOrNull(body.text);
  return facts;
}

function readChoices(choices: unknown[], facts: ResponseFacts): void {
  const text = new OutputText(UNCAPPED);
  for (const [position, choice] of choices.entries()) {
    if (!isObject(choice)) continue;
    const reason = stringOrNull(choice.finish_reason);
    if (reason !== null) facts.finishReasons.push(reason);
    const message = isObject(choice.message) ? choice.message : null;
    const content = stringOrNull(message === null ? choice.text : message.content);
    if (content !== null) text.add(typeof choice.index === 'number' ? choice.index : position, content);
  }
  facts.outputText = text.text();
}

// Responses API: the status plays the finish reason; the text is every `output_text` part.
function readResponse(response: JsonObject, facts: ResponseFacts): void {
  const status = stringOrNull(response.status);
  if (status !== null) facts.finishReasons.push(status);
  if (!Array.isArray(response.output)) return;
  const text = new OutputText(UNCAPPED);
  for (const item of response.output) {
    if (!isObject(item) || !Array.isArray(item.content)) continue;
    for (const part of item.content) {
      if (isObject(part) && part.type === 'output_text') text.add(0, stringOrNull(part.text) ?? '');
    }
  }
  facts.outputText = text.text();
}
