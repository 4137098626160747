// Which WebSocket upstreams go through the egress proxy: the rules undici's EnvHttpProxyAgent
// applies to HTTP (end to end through a CONNECT proxy in proxy-tls.test.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { WebSocketEgress } from '../src/proxy/egress.ts';

function proxyOf(egress: WebSocketEgress, origin: string): string | null {
  const agent = egress.agentFor(origin);
  return agent instanceof HttpsProxyAgent ? agent.proxy.href : null;
}

test('a secure upstream takes HTTPS_PROXY, else HTTP_PROXY; a plain one HTTP_PROXY only', () => {
  const both = new WebSocketEgress({ httpProxy: 'http://plain:3128/', httpsProxy: 'http://secure:3128/', noProxy: null });
  assert.equal(proxyOf(both, 'https://api.openai.com'), 'http://secure:3128/');
  assert.equal(proxyOf(both, 'http://internal:8080'), 'http://plain:3128/');
  const httpOnly = new WebSocketEgress({ httpProxy: 'http://plain:3128/', httpsProxy: null, noProxy: null });
  assert.equal(proxyOf(httpOnly, 'https://api.openai.com'), 'http://plain:3128/');
  const httpsOnly = new WebSocketEgress({ httpProxy: null, httpsProxy: 'http://secure:3128/', noProxy: null });
  assert.equal(proxyOf(httpsOnly, 'http://internal:8080'), null);
  assert.equal(proxyOf(new WebSocketEgress({ httpProxy: null, httpsProxy: null, noProxy: null }), 'https://api.openai.com'), null);
});

test('NO_PROXY: exact hosts, domain suffixes, ports, IPv6 and *', () => {
  const egress = new WebSocketEgress({ httpProxy: null, httpsProxy: 'http://secure:3128/', noProxy: 'localhost, .corp.example *.lab.example,gw.example:8443 ::1 [fd00::7]:443' });
  assert.equal(proxyOf(egress, 'https://localhost'), null);
  assert.equal(proxyOf(egress, 'https://LOCALHOST:9000'), null);
  assert.equal(proxyOf(egress, 'https://llm.corp.example'), null);
  assert.equal(proxyOf(egress, 'https://gpu.lab.example'), null);
  assert.equal(proxyOf(egress, 'https://gw.example:8443'), null);
  assert.equal(proxyOf(egress, 'https://gw.example'), 'http://secure:3128/', 'another port than the entry');
  assert.equal(proxyOf(egress, 'https://[::1]:8443'), null);
  assert.equal(proxyOf(egress, 'https://[fd00::7]'), null);
  assert.equal(proxyOf(egress, 'https://[fd00::7]:8443'), 'http://secure:3128/');
  assert.equal(proxyOf(egress, 'https://notlocalhost'), 'http://secure:3128/');
  assert.equal(proxyOf(egress, 'https://api.openai.com'), 'http://secure:3128/');
  const all = new WebSocketEgress({ httpProxy: null, httpsProxy: 'http://secure:3128/', noProxy: '*' });
  assert.equal(proxyOf(all, 'https://api.openai.com'), null);
});

test('one agent per upstream origin', () => {
  const egress = new WebSocketEgress({ httpProxy: null, httpsProxy: 'http://secure:3128/', noProxy: null });
  assert.equal(egress.agentFor('https://api.openai.com'), egress.agentFor('https://api.openai.com'));
});
