-- wrk script: POST the fixed ~300-byte chat request (same bytes as CHAT_REQUEST in bench/lib/payloads.ts;
-- the harness checks they match) with the headers an OpenAI SDK client sends. The key is the
-- endpoint's (BENCH_API_KEY, set by bench/lib/wrk.ts: a virtual key for the policy variants).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_API_KEY") or "sk-bench")
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a concise assistant used by an automated benchmark."},{"role":"user","content":"Summarise in one sentence why transparent proxies must stream responses without buffering them."}],"temperature":0.2,"max_tokens":64,"user":"bench-user-0001"}'
