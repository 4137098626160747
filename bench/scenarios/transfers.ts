// Scenario 4: a large download and a large chunked upload through each endpoint: wall time, the
// RSS rise of the endpoint's server process, and the byte count that actually arrived.
import type { Endpoint } from '../lib/endpoints.ts';
import { watchRss } from '../lib/rss.ts';
import { download, upload, type Transfer } from '../lib/transfer.ts';
import { pause, type RoundContext } from './context.ts';

async function watched(endpoint: Endpoint, transfer: () => Promise<Transfer>): Promise<Transfer & { rssRiseMiB: number }> {
  const watch = watchRss(endpoint.pid);
  let result: Transfer;
  try {
    result = await transfer();
  } catch (error) {
    watch.stop();
    throw error;
  }
  return { ...result, rssRiseMiB: watch.stop() };
}

export async function transfers(ctx: RoundContext): Promise<void> {
  const bytes = ctx.settings.transferBytes;
  for (const endpoint of ctx.order) {
    const result = await watched(endpoint, () => download(endpoint.baseUrl, bytes));
    if (result.status !== 200 || result.bytes !== bytes) {
      throw new Error(`download through ${endpoint.name}: status ${result.status}, ${result.bytes} of ${bytes} bytes arrived`);
    }
    ctx.samples.add('dlSeconds', endpoint.name, result.seconds);
    ctx.samples.add('dlRss', endpoint.name, result.rssRiseMiB);
    await pause(endpoint);
  }
  for (const endpoint of ctx.order) {
    const result = await watched(endpoint, () => upload(endpoint.baseUrl, bytes));
    if (result.status !== 200 || result.bytes !== bytes) {
      throw new Error(`upload through ${endpoint.name}: status ${result.status}, upstream counted ${result.bytes} of ${bytes} bytes`);
    }
    ctx.samples.add('ulSeconds', endpoint.name, result.seconds);
    ctx.samples.add('ulRss', endpoint.name, result.rssRiseMiB);
    await pause(endpoint);
  }
}
