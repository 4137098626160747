/** How an exchange ended, as the audit record, the metrics and the spans say it; each ProxyError carries one. */
export type Outcome =
  | 'ok'
  | 'upstream_unreachable'
  | 'upstream_timeout'
  | 'upstream_reset'
  | 'client_aborted'
  | 'rejected'
  /** Cut by the proxy's own shutdown, once SHUTDOWN_GRACE_MS had run out. */
  | 'shutdown';
