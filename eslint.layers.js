// The layers of src/ and the arrows allowed between them, enforced by lint (eslint.config.js) and
// tested by test/layers.test.ts: the hot path (proxy/) imports no observer and no exporter; the
// capture layer produces facts for audit, metrics and tracing and imports none of them; metrics and
// tracing read facts, never the audit record; audit/ is three folders (record/ builds the record,
// journal/ writes it to disk, shipper/ ships it to MongoDB) and only the shipper (and the journal's
// EJSON line writer) touch MongoDB's packages, and in policy/ the shared quota counters
// (policy/quota-store-mongo.ts).

const EXPORTERS = ['@opentelemetry/*', 'prom-client'];
const DATABASE = ['mongodb', 'bson'];

/** A pattern for each folder named, as imported from a folder of src/ or from one nested in it (audit/record/). */
function folders(...names) {
  return names.flatMap((name) => [`../${name}`, `../${name}/*`, `../../${name}`, `../../${name}/*`]);
}

/** The `@typescript-eslint/no-restricted-imports` rule refusing these patterns, saying why. */
function refuse(why, ...groups) {
  return ['error', { patterns: [{ group: groups.flat(), message: why, allowTypeImports: false }] }];
}

const RULE = '@typescript-eslint/no-restricted-imports';

export const layers = [
  {
    name: 'layers/src',
    files: ['src/**/*.ts'],
    rules: { [RULE]: refuse('only the MongoDB shipper (audit/shipper/), the journal line writer (audit/journal/journal-line.ts) and the quota store (policy/quota-store-mongo.ts) use the database packages', DATABASE) },
  },
  {
    name: 'layers/proxy',
    files: ['src/proxy/**/*.ts'],
    rules: {
      [RULE]: refuse(
        'proxy/ is the hot path: it publishes the exchange to observers (proxy/observer.ts) and imports none of them, nor any exporter or database',
        folders('audit', 'capture', 'telemetry', 'policy', 'cli'),
        ['../runtime.ts', '../app.ts', '../admin.ts'],
        EXPORTERS,
        DATABASE,
      ),
    },
  },
  {
    name: 'layers/capture',
    files: ['src/capture/**/*.ts'],
    rules: {
      [RULE]: refuse('capture/ produces the facts audit, metrics and tracing consume: it imports none of them, nor any exporter or database', folders('audit', 'telemetry', 'policy'), EXPORTERS, DATABASE),
    },
  },
  {
    name: 'layers/telemetry',
    files: ['src/telemetry/**/*.ts'],
    rules: { [RULE]: refuse('telemetry/ consumes the capture facts, not the audit record; it touches no database', folders('audit'), DATABASE) },
  },
  {
    name: 'layers/audit',
    files: ['src/audit/**/*.ts'],
    rules: { [RULE]: refuse('audit/ records and ships; metrics and traces are telemetry/ (both consume the capture facts)', folders('telemetry'), EXPORTERS, DATABASE) },
  },
  {
    name: 'layers/audit-shipper',
    files: ['src/audit/shipper/**/*.ts'],
    rules: { [RULE]: refuse('audit/ records and ships; metrics and traces are telemetry/ (both consume the capture facts)', folders('telemetry'), EXPORTERS) },
  },
  {
    name: 'layers/audit-journal-line',
    files: ['src/audit/journal/journal-line.ts'],
    rules: {
      [RULE]: refuse('the journal writes its lines in MongoDB Extended JSON (bson) but never talks to the database: that is the shipper (audit/shipper/)', folders('telemetry'), EXPORTERS, ['mongodb']),
    },
  },
  {
    name: 'layers/policy',
    files: ['src/policy/**/*.ts'],
    rules: { [RULE]: refuse('policy/ decides on a request; it neither records (audit/) nor measures (telemetry/)', folders('telemetry', 'audit'), DATABASE) },
  },
  {
    name: 'layers/policy-quota-store',
    files: ['src/policy/quota-store-mongo.ts'],
    rules: { [RULE]: refuse('the quota store keeps the shared counts in MongoDB; like the rest of policy/ it neither records (audit/) nor measures (telemetry/)', folders('telemetry', 'audit'), ['bson']) },
  },
];
