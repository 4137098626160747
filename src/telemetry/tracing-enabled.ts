/**
 * Whether tracing is asked for, decided without loading the OpenTelemetry SDK: with no OTLP
 * endpoint configured the SDK is never imported, so tracing costs nothing at all.
 */
type Env = Record<string, string | undefined>;

export function tracingRequested(env: Env): boolean {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  return endpoint !== undefined && endpoint !== '' && env.OTEL_SDK_DISABLED !== 'true' && env.OTEL_TRACES_EXPORTER !== 'none';
}
