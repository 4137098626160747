// The fixed bench payloads: the chat request the clients send (keep in sync with wrk/chat.lua)
// and the chat.completion / SSE chunks the upstream emulator answers with.

export const STREAM_CHUNKS = 20;
export const STREAM_CHUNK_GAP_MS = 5;
const MODEL = 'gpt-4o-mini-2024-07-18';
const CREATED = 1_700_000_000;

/** ~300-byte chat request, the same body wrk/chat.lua posts. */
export const CHAT_REQUEST = {
  model: 'gpt-4o-mini',
  messages: [
    { role: 'system', content: 'You are a concise assistant used by an automated benchmark.' },
    { role: 'user', content: 'Summarise in one sentence why transparent proxies must stream responses without buffering them.' },
  ],
  temperature: 0.2,
  max_tokens: 64,
  user: 'bench-user-0001',
};

export const STREAM_REQUEST = { ...CHAT_REQUEST, stream: true, stream_options: { include_usage: true } };

const USAGE = {
  prompt_tokens: 42,
  completion_tokens: 17,
  total_tokens: 59,
  prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0 },
};

/** ~500-byte non-streamed answer. */
export function chatCompletion(): object {
  return {
    id: 'chatcmpl-bench0000000000000000001',
    object: 'chat.completion',
    created: CREATED,
    model: MODEL,
    choices: [{
      index: 0,
      message: { role: 'assistant', content: 'Buffering delays every token and grows memory.', refusal: null },
      logprobs: null,
      finish_reason: 'stop',
    }],
    usage: USAGE,
    system_fingerprint: 'fp_bench',
  };
}

function chunk(delta: object, finish: string | null, i: number): string {
  const body = {
    id: 'chatcmpl-bench0000000000000000002',
    object: 'chat.completion.chunk',
    created: CREATED,
    model: MODEL,
    system_fingerprint: 'fp_bench',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    usage: null,
    obfuscation: `b${i}`,
  };
  return `data: ${JSON.stringify(body)}\n\n`;
}

/** The 20 chat.completion.chunk events: role first, then content, the last one carrying finish_reason. */
export function streamChunks(): string[] {
  return Array.from({ length: STREAM_CHUNKS }, (_, i) => {
    if (i === 0) return chunk({ role: 'assistant', content: '', refusal: null }, null, i);
    if (i === STREAM_CHUNKS - 1) return chunk({}, 'stop', i);
    return chunk({ content: ` tok${String(i).padStart(2, '0')}` }, null, i);
  });
}

/** The usage chunk and the terminator, sent together after the last chunk. */
export function streamTail(): string {
  const usage = {
    id: 'chatcmpl-bench0000000000000000002',
    object: 'chat.completion.chunk',
    created: CREATED,
    model: MODEL,
    system_fingerprint: 'fp_bench',
    choices: [],
    usage: USAGE,
  };
  return `data: ${JSON.stringify(usage)}\n\ndata: [DONE]\n\n`;
}
