/**
 * Sums token usage over a Realtime WebSocket session: each `response.done` server event
 * carries the usage of one model response (`response.usage`, Realtime field names).
 * https://platform.openai.com/docs/api-reference/realtime-server-events/response/done
 */
import type { Usage } from './body-types.ts';
import { isObject, parseJson } from './guards.ts';
import { addUsage, normalizeUsage } from './usage.ts';

/** Adds the usage of one parsed server event to `sum` when it is a `response.done`. */
export function addRealtimeUsage(sum: Usage | null, event: unknown): Usage | null {
  if (!isObject(event) || event.type !== 'response.done' || !isObject(event.response)) return sum;
  return addUsage(sum, normalizeUsage(event.response.usage));
}

/**
 * Same, from a raw text message. Most Realtime traffic is large audio deltas, so a message
 * is only parsed when its text mentions `response.done`.
 */
export function addRealtimeUsageFromMessage(sum: Usage | null, message: string): Usage | null {
  if (!message.includes('"response.done"')) return sum;
  return addRealtimeUsage(sum, parseJson(message));
}
