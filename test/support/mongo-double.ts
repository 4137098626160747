/**
 * An in-memory MongoDB server for tests. It speaks the wire protocol well enough for the real,
 * unpatched `mongodb` driver (see shared/design/mongodb-test-double.md).
 *
 * What it fakes: a standalone mongod 7.0 (wire version 21) on 127.0.0.1. It answers the legacy
 * OP_QUERY handshake with OP_REPLY, then speaks OP_MSG, including kind-1 document sequences and
 * `moreToCome`. Commands: hello/isMaster, ping, buildInfo, endSessions, insert, createIndexes,
 * listIndexes, find, getMore, killCursors, count, aggregate (only the `countDocuments` pipeline),
 * update and findAndModify (operators $inc, $set, $setOnInsert, $max; upsert; no pipelines), delete, drop, dropDatabase, and configureFailPoint `failCommand` (`closeConnection`,
 * `errorCode`, `blockConnection`, and the non-standard `closeConnectionAfterApply`).
 * Outages: stop()/start() on the same port, stall(), and a socket dropped in the middle of an insert.
 *
 * What it does NOT fake, so a passing test proves nothing about these against a real mongod:
 * - Query semantics beyond equality, $in/$nin, $ne, $gt/$gte/$lt/$lte, $exists and $and/$or/$nor.
 *   There is no collation, regex, $elemMatch, projection, update operators other than the four above,
 *   replacement or pipeline updates, arrayFilters, or sparse,
 *   partial or multikey unique index. Array sorting only approximates mongod's min/max rule.
 *   Longs above 2^53 lose precision when compared.
 * - Error wording, codeNames and errInfo. Query plans, index use for reads, size and sort limits.
 * - Timing: TTL indexes are stored but nothing ever expires. Idle cursors never time out.
 *   maxTimeMS is ignored.
 * - Concurrency: every command is atomic, and a cursor is a snapshot taken when it was opened.
 * - Durability and replication: write concern, journaling, elections, transactions, and retryable
 *   writes (the driver never retries a write against a standalone).
 * - Auth, TLS and compression. Compression is never advertised, so the driver never compresses.
 * - Network failures other than a clean reset or a refused connection: there are no blackholes
 *   or half-open sockets. Data is never lost by an unclean stop.
 * Anything outside the subset is refused with NotImplemented (238) or CommandNotFound (59), so a
 * test fails loudly rather than passing against invented behaviour.
 */
import { once } from 'node:events';
import net from 'node:net';
import { Double, EJSON, Int32, Long, ObjectId, calculateObjectSize, deserialize, serialize } from 'bson';
import type { Document } from 'bson';

export interface MongoDouble {
  uri: string;
  port: number;
  stop(opts?: { wipe?: boolean }): Promise<void>;
  start(): Promise<void>;
  stall(on: boolean): void;
  dropConnectionsDuringNextInsert(): void;
  documents(db: string, coll: string): Document[];
  indexes(db: string, coll: string): Document[];
  commands: string[];
}

type Doc = Record<string, unknown>;

interface Index { spec: Doc; fields: string[]; unique: boolean; seen: Set<string> }
interface Collection { docs: Doc[]; indexes: Index[] }
interface Cursor { ns: string; docs: Doc[] }
interface Conn { id: number; socket: net.Socket; buffered: Buffer; queue: Promise<void> }
interface Request { requestId: number; opCode: number; body: Doc; db: string; moreToCome: boolean }
interface FailPoint { commands: Set<string>; skip: number; remaining: number; data: Doc }

const OP_REPLY = 1;
const OP_QUERY = 2004;
const OP_MSG = 2013;
const CHECKSUM_PRESENT = 1;
const MORE_TO_COME = 2;
const MAX_BATCH_BYTES = 16 * 1024 * 1024;
/** Keeps Int32, Double and Long apart, so documents go back out as the BSON they came in as. */
const EXACT = { promoteValues: false } as const;
const DROP = Symbol('destroy the socket without replying');
/** Never stalled: a hello that hangs makes the driver's monitor time out and interrupt the whole pool. */
const HANDSHAKE = new Set(['hello', 'isMaster', 'ismaster']);

class CommandError extends Error {
  readonly code: number;
  readonly codeName: string;
  constructor(code: number, codeName: string, message: string) {
    super(message);
    this.code = code;
    this.codeName = codeName;
  }
}

const notImplemented = (what: string): CommandError =>
  new CommandError(238, 'NotImplemented', `mongo-double does not implement ${what}`);

// ---------------------------------------------------------------- BSON values

function bsonType(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || !('_bsontype' in v)) return undefined;
  return typeof v._bsontype === 'string' ? v._bsontype : undefined;
}

function isDoc(v: unknown): v is Doc {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date) &&
    !(v instanceof RegExp) && bsonType(v) === undefined;
}

function num(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  const t = bsonType(v);
  if (t === 'Int32' || t === 'Double') return (v as { value: number }).value;
  if (t === 'Long' || t === 'Decimal128') return Number(String(v));
  return undefined;
}

const truthy = (v: unknown): boolean => (typeof v === 'boolean' ? v : (num(v) ?? 1) !== 0);

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new CommandError(14, 'TypeMismatch', `${what} must be a string`);
  return v;
}

function docs(v: unknown, what: string): Doc[] {
  const items: unknown[] = Array.isArray(v) ? v : [undefined];
  if (!items.every(isDoc)) throw new CommandError(14, 'TypeMismatch', `${what} must be an array of documents`);
  return items;
}

function normalize(v: unknown): unknown {
  const n = num(v);
  if (n !== undefined) return n;
  if (Array.isArray(v)) return v.map(normalize);
  if (isDoc(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]));
  return v;
}

/** Int32 1 and Double 1.0 must collide in a unique index, as they do in mongod. */
const canonical = (v: unknown): string => EJSON.stringify([normalize(v)], { relaxed: true });

/** For assertions: Dates as Date, numbers as numbers. */
const friendly = (doc: Doc): Document => deserialize(serialize(doc));

// ---------------------------------------------------------------- ordering and matching

const RANK: Record<string, number> = {
  MinKey: 0, Int32: 2, Double: 2, Long: 2, Decimal128: 2, BSONSymbol: 3, Binary: 6, ObjectId: 7,
  Timestamp: 10, BSONRegExp: 11, MaxKey: 12,
};

/** mongod orders across types: null < numbers < strings < objects < arrays < ObjectId < bool < Date. */
function rank(v: unknown): number {
  if (v === null || v === undefined) return 1;
  if (typeof v === 'number') return 2;
  if (typeof v === 'string') return 3;
  if (typeof v === 'boolean') return 8;
  if (v instanceof Date) return 9;
  if (v instanceof RegExp) return 11;
  if (Array.isArray(v)) return 5;
  return RANK[bsonType(v) ?? ''] ?? 4;
}

function scalar(v: unknown): number | string {
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return Number(v);
  if (v instanceof Date) return v.getTime();
  return num(v) ?? canonical(v);
}

function compare(a: unknown, b: unknown): number {
  const byType = rank(a) - rank(b);
  if (byType !== 0 || rank(a) === 1) return byType;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = compare(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  const [x, y] = [scalar(a), scalar(b)];
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Every value a dotted path reaches, descending into arrays of subdocuments as mongod does. */
function valuesAt(doc: Doc, path: string): unknown[] {
  let current: unknown[] = [doc];
  for (const part of path.split('.')) {
    current = current.flatMap((v): unknown[] => {
      if (Array.isArray(v) && /^\d+$/.test(part)) return Number(part) < v.length ? [v[Number(part)]] : [];
      if (Array.isArray(v)) return (v as unknown[]).filter((el) => isDoc(el) && part in el).map((el) => (el as Doc)[part]);
      return isDoc(v) && part in v ? [v[part]] : [];
    });
  }
  return current;
}

/** A query value matches an array field if it equals the array itself or any element. */
const expand = (vals: unknown[]): unknown[] =>
  vals.flatMap((v) => (Array.isArray(v) ? [v, ...(v as unknown[])] : [v]));

function equalsAny(vals: unknown[], x: unknown): boolean {
  if (x instanceof RegExp || bsonType(x) === 'BSONRegExp') throw notImplemented('regular expressions');
  if (x === null) return vals.length === 0 || expand(vals).some((v) => v === null || v === undefined);
  return expand(vals).some((v) => compare(v, x) === 0);
}

function list(arg: unknown, op: string): unknown[] {
  if (!Array.isArray(arg)) throw new CommandError(2, 'BadValue', `${op} needs an array`);
  const items: unknown[] = arg;
  return items;
}

/** Range operators never match across types: {$gt: 5} does not match a string. */
const inRange = (vals: unknown[], arg: unknown, test: (c: number) => boolean): boolean =>
  expand(vals).some((v) => rank(v) === rank(arg) && test(compare(v, arg)));

function operatorMatches(vals: unknown[], op: string, arg: unknown): boolean {
  switch (op) {
    case '$eq': return equalsAny(vals, arg);
    case '$ne': return !equalsAny(vals, arg);
    case '$in': return list(arg, op).some((x) => equalsAny(vals, x));
    case '$nin': return !list(arg, op).some((x) => equalsAny(vals, x));
    case '$gt': return inRange(vals, arg, (c) => c > 0);
    case '$gte': return inRange(vals, arg, (c) => c >= 0);
    case '$lt': return inRange(vals, arg, (c) => c < 0);
    case '$lte': return inRange(vals, arg, (c) => c <= 0);
    case '$exists': return (vals.length > 0) === truthy(arg);
    default: throw notImplemented(`query operator ${op}`);
  }
}

function matches(doc: Doc, filter: Doc): boolean {
  return Object.entries(filter).every(([key, cond]) => {
    if (key === '$and') return docs(cond, key).every((f) => matches(doc, f));
    if (key === '$or') return docs(cond, key).some((f) => matches(doc, f));
    if (key === '$nor') return !docs(cond, key).some((f) => matches(doc, f));
    if (key.startsWith('$')) throw notImplemented(`query operator ${key}`);
    const vals = valuesAt(doc, key);
    if (isDoc(cond) && Object.keys(cond)[0]?.startsWith('$')) {
      return Object.entries(cond).every(([op, arg]) => operatorMatches(vals, op, arg));
    }
    return equalsAny(vals, cond);
  });
}

/** An array sorts by its smallest element ascending and its largest descending. */
function sortValue(doc: Doc, path: string, dir: number): unknown {
  const leaves = valuesAt(doc, path).flatMap((v) => (Array.isArray(v) ? (v as unknown[]) : [v]));
  return leaves.reduce((best, v) => (compare(v, best) * dir < 0 ? v : best), leaves[0] ?? null);
}

function sortDocs(all: Doc[], spec: Doc): Doc[] {
  const keys = Object.entries(spec).map(([path, d]) => {
    const dir = num(d);
    if (dir !== 1 && dir !== -1) throw notImplemented(`sort on ${path}: ${canonical(d)}`);
    return { path, dir };
  });
  return all.sort((a, b) => {
    for (const { path, dir } of keys) {
      const c = compare(sortValue(a, path, dir), sortValue(b, path, dir)) * dir;
      if (c !== 0) return c;
    }
    return 0;
  });
}

// ---------------------------------------------------------------- wire protocol

function parseMsg(frame: Buffer, requestId: number): Request {
  const flags = frame.readUInt32LE(16);
  const end = flags & CHECKSUM_PRESENT ? frame.length - 4 : frame.length;
  let body: Doc | undefined;
  const sequences: [string, Doc[]][] = [];
  for (let pos = 20; pos < end; pos += 1 + frame.readInt32LE(pos + 1)) {
    const sectionEnd = pos + 1 + frame.readInt32LE(pos + 1);
    if (frame[pos] === 0) {
      body = deserialize(frame.subarray(pos + 1, sectionEnd), EXACT);
      continue;
    }
    if (frame[pos] !== 1) throw new Error(`OP_MSG section kind ${frame[pos]}`);
    const nameEnd = frame.indexOf(0, pos + 5);
    const items: Doc[] = [];
    for (let p = nameEnd + 1; p < sectionEnd; p += frame.readInt32LE(p)) {
      items.push(deserialize(frame.subarray(p, p + frame.readInt32LE(p)), EXACT));
    }
    sequences.push([frame.toString('utf8', pos + 5, nameEnd), items]);
  }
  if (!body) throw new Error('OP_MSG without a body section');
  // 7.x sends insert.documents and delete.deletes as sequences; 6.x puts them in the body.
  for (const [name, items] of sequences) body[name] = items;
  const db = typeof body.$db === 'string' ? body.$db : 'admin';
  return { requestId, opCode: OP_MSG, body, db, moreToCome: (flags & MORE_TO_COME) !== 0 };
}

function parseQuery(frame: Buffer, requestId: number): Request {
  const nameEnd = frame.indexOf(0, 20);
  const db = frame.toString('utf8', 20, nameEnd).split('.')[0] ?? 'admin';
  const start = nameEnd + 9;
  const query: Doc = deserialize(frame.subarray(start, start + frame.readInt32LE(start)), EXACT);
  return { requestId, opCode: OP_QUERY, body: isDoc(query.$query) ? query.$query : query, db, moreToCome: false };
}

function parseRequest(frame: Buffer): Request {
  const opCode = frame.readInt32LE(12);
  if (opCode === OP_MSG) return parseMsg(frame, frame.readInt32LE(4));
  if (opCode === OP_QUERY) return parseQuery(frame, frame.readInt32LE(4));
  throw new Error(`unsupported opcode ${opCode}`);
}

/** OP_QUERY is answered with OP_REPLY as mongod does, although the driver would also parse an OP_MSG. */
function encodeReply(request: Request, reply: Doc, requestId: number): Buffer {
  const doc = serialize(reply);
  const legacy = request.opCode === OP_QUERY;
  const header = Buffer.alloc(legacy ? 36 : 21);
  header.writeInt32LE(header.length + doc.length, 0);
  header.writeInt32LE(requestId, 4);
  header.writeInt32LE(request.requestId, 8);
  header.writeInt32LE(legacy ? OP_REPLY : OP_MSG, 12);
  if (legacy) header.writeInt32LE(1, 32);
  return Buffer.concat([header, doc]);
}

function errorReply(err: unknown): Doc {
  if (err instanceof CommandError) return { ok: 0, errmsg: err.message, code: err.code, codeName: err.codeName };
  return { ok: 0, errmsg: String(err), code: 1, codeName: 'InternalError' };
}

/** Unref'd: a blocked command must not keep the test process alive once its socket is gone. */
const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

// ---------------------------------------------------------------- the server

class MongoDoubleServer implements MongoDouble {
  uri = '';
  port: number;
  readonly commands: string[] = [];
  private readonly maxWriteBatchSize: number;
  private readonly listener = net.createServer((socket) => this.accept(socket));
  private readonly sockets = new Set<net.Socket>();
  private readonly collections = new Map<string, Collection>();
  private readonly cursors = new Map<string, Cursor>();
  private stalled = false;
  private readonly stalledCommands: (() => void)[] = [];
  private failPoint: FailPoint | undefined;
  private dropNextInsert = false;
  private connectionCount = 0;
  private replyCount = 0;
  /** Above 2^31, so a cursor id that slipped out as an int32 could not pass unnoticed. */
  private cursorCount = 7_000_000_000;

  constructor(port: number, maxWriteBatchSize: number) {
    this.port = port;
    this.maxWriteBatchSize = maxWriteBatchSize;
  }

  async start(): Promise<void> {
    if (this.listener.listening) return;
    this.listener.listen(this.port, '127.0.0.1');
    await once(this.listener, 'listening');
    const address = this.listener.address();
    if (address && typeof address === 'object') this.port = address.port;
    this.uri = `mongodb://127.0.0.1:${this.port}/?directConnection=true`;
  }

  /** Like a mongod restart: connections, cursors and fail points are lost; data too if wiped. */
  async stop(opts: { wipe?: boolean } = {}): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    this.cursors.clear();
    this.failPoint = undefined;
    if (opts.wipe === true) this.collections.clear();
    if (!this.listener.listening) return;
    await new Promise<void>((resolve) => this.listener.close(() => resolve()));
  }

  /** A stalled command runs when released, unless its socket was seen to close in the meantime. */
  stall(on: boolean): void {
    this.stalled = on;
    if (!on) for (const release of this.stalledCommands.splice(0)) release();
  }

  /** The next insert stores the first half (rounded down) of its wire batch, then the socket is destroyed unanswered. */
  dropConnectionsDuringNextInsert(): void {
    this.dropNextInsert = true;
  }

  documents(db: string, coll: string): Document[] {
    return (this.collections.get(`${db}.${coll}`)?.docs ?? []).map(friendly);
  }

  indexes(db: string, coll: string): Document[] {
    return (this.collections.get(`${db}.${coll}`)?.indexes ?? []).map((ix) => friendly(ix.spec));
  }

  private accept(socket: net.Socket): void {
    const conn: Conn = { id: ++this.connectionCount, socket, buffered: Buffer.alloc(0), queue: Promise.resolve() };
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('data', (chunk: Buffer) => this.receive(conn, chunk));
  }

  private receive(conn: Conn, chunk: Buffer): void {
    conn.buffered = Buffer.concat([conn.buffered, chunk]);
    while (conn.buffered.length >= 4) {
      const length = conn.buffered.readInt32LE(0);
      if (length < 16) return void conn.socket.destroy();
      if (conn.buffered.length < length) return;
      const frame = conn.buffered.subarray(0, length);
      conn.buffered = conn.buffered.subarray(length);
      // One connection's replies must leave in request order, stalled or not.
      conn.queue = conn.queue.then(() => this.serve(conn, frame)).catch(() => {
        conn.socket.destroy();
      });
    }
  }

  private async serve(conn: Conn, frame: Buffer): Promise<void> {
    const request = parseRequest(frame);
    const name = Object.keys(request.body)[0] ?? '';
    this.commands.push(name);
    if (this.stalled && !HANDSHAKE.has(name)) await new Promise<void>((resolve) => this.stalledCommands.push(resolve));
    if (conn.socket.destroyed) return;
    const reply = await this.execute(name, request, conn);
    if (reply === DROP) return void conn.socket.destroy();
    // The driver ignores responseTo: an unwanted reply would be read as the answer to its next command.
    if (request.moreToCome || conn.socket.destroyed) return;
    conn.socket.write(encodeReply(request, reply, ++this.replyCount));
  }

  private async execute(name: string, request: Request, conn: Conn): Promise<Doc | typeof DROP> {
    const fault = this.triggerFailPoint(name);
    if (fault?.blockConnection === true) await delay(num(fault.blockTimeMS) ?? 0);
    if (fault?.closeConnection === true) return DROP;
    const code = num(fault?.errorCode);
    if (code !== undefined) {
      const errorLabels = fault?.errorLabels;
      return { ok: 0, code, errmsg: `Failing command ${name} via 'failCommand' failpoint`, ...(errorLabels ? { errorLabels } : {}) };
    }
    let reply: Doc | typeof DROP;
    try {
      reply = this.run(name, request.body, request.db, conn);
    } catch (err) {
      reply = errorReply(err);
    }
    return fault?.closeConnectionAfterApply === true ? DROP : reply;
  }

  private triggerFailPoint(name: string): Doc | undefined {
    const fp = this.failPoint;
    if (!fp?.commands.has(name)) return undefined;
    if (fp.skip > 0) return void fp.skip--;
    if (fp.remaining <= 0) return undefined;
    fp.remaining--;
    return fp.data;
  }

  private run(name: string, cmd: Doc, db: string, conn: Conn): Doc | typeof DROP {
    switch (name) {
      case 'hello': case 'isMaster': case 'ismaster': return this.hello(name, cmd, conn);
      case 'ping': case 'endSessions': return { ok: 1 };
      case 'buildInfo': case 'buildinfo':
        return { version: '7.0.0', versionArray: [7, 0, 0, 0], gitVersion: 'mongo-double', bits: 64, ok: 1 };
      case 'insert': return this.insert(cmd, db);
      case 'createIndexes': return this.createIndexes(cmd, db);
      case 'listIndexes': return this.listIndexes(cmd, db);
      case 'find': return this.find(cmd, db);
      case 'getMore': return this.getMore(cmd);
      case 'killCursors': return this.killCursors(cmd);
      case 'count': return { n: this.select(cmd, db, cmd.query).length, ok: 1 };
      case 'aggregate': return this.aggregate(cmd, db);
      case 'delete': return this.delete(cmd, db);
      case 'update': return this.update(cmd, db);
      case 'findAndModify': case 'findandmodify': return this.findAndModify(cmd, db);
      case 'drop': return this.drop(cmd, db);
      case 'dropDatabase': return this.dropDatabase(db);
      case 'configureFailPoint': return this.configureFailPoint(cmd);
      default: throw new CommandError(59, 'CommandNotFound', `no such command: '${name}'`);
    }
  }

  /** Copies a mongod 7.0 standalone. Without topologyVersion the driver polls instead of streaming. */
  private hello(name: string, cmd: Doc, conn: Conn): Doc {
    return {
      [name === 'hello' ? 'isWritablePrimary' : 'ismaster']: true,
      ...(cmd.helloOk === true ? { helloOk: true } : {}),
      maxBsonObjectSize: 16777216, maxMessageSizeBytes: 48000000, maxWriteBatchSize: this.maxWriteBatchSize,
      localTime: new Date(), logicalSessionTimeoutMinutes: 30, connectionId: conn.id,
      minWireVersion: 0, maxWireVersion: 21, readOnly: false, ok: 1,
    };
  }

  private existing(db: string, name: unknown): Collection | undefined {
    return this.collections.get(`${db}.${str(name, 'collection name')}`);
  }

  private ensure(db: string, name: unknown): Collection {
    const found = this.existing(db, name);
    if (found) return found;
    const created: Collection = { docs: [], indexes: [newIndex({ v: 2, key: { _id: 1 }, name: '_id_' }, true)] };
    this.collections.set(`${db}.${str(name, 'collection name')}`, created);
    return created;
  }

  private insert(cmd: Doc, db: string): Doc | typeof DROP {
    const ns = `${db}.${str(cmd.insert, 'insert')}`;
    const batch = docs(cmd.documents, 'documents');
    const dropMidway = this.dropNextInsert;
    this.dropNextInsert = false;
    const coll = this.ensure(db, cmd.insert);
    const writeErrors: Doc[] = [];
    let n = 0;
    for (const [index, raw] of (dropMidway ? batch.slice(0, Math.floor(batch.length / 2)) : batch).entries()) {
      // mongod stores _id first; the driver appends the _id it generates.
      const doc = { _id: '_id' in raw ? raw._id : new ObjectId(), ...raw };
      const clash = coll.indexes.find((ix) => ix.unique && ix.seen.has(uniqueKey(ix, doc)));
      if (clash) {
        writeErrors.push(duplicateKeyError(index, ns, clash, doc));
        if (cmd.ordered === false) continue;
        break;
      }
      for (const ix of coll.indexes) if (ix.unique) ix.seen.add(uniqueKey(ix, doc));
      coll.docs.push(doc);
      n++;
    }
    if (dropMidway) return DROP;
    return writeErrors.length > 0 ? { n, writeErrors, ok: 1 } : { n, ok: 1 };
  }

  private createIndexes(cmd: Doc, db: string): Doc {
    const createdCollectionAutomatically = !this.existing(db, cmd.createIndexes);
    const coll = this.ensure(db, cmd.createIndexes);
    const before = coll.indexes.length;
    const added: Index[] = [];
    for (const spec of docs(cmd.indexes, 'indexes')) {
      const wanted = validateIndexSpec(spec);
      if (!alreadyExists(coll.indexes.concat(added), wanted)) added.push(buildIndex(coll, wanted));
    }
    coll.indexes.push(...added);
    return { numIndexesBefore: before, numIndexesAfter: coll.indexes.length, createdCollectionAutomatically,
      ...(added.length === 0 ? { note: 'all indexes already exist' } : {}), ok: 1 };
  }

  private listIndexes(cmd: Doc, db: string): Doc {
    const coll = this.existing(db, cmd.listIndexes);
    if (!coll) throw new CommandError(26, 'NamespaceNotFound', `ns does not exist: ${db}.${String(cmd.listIndexes)}`);
    return this.openCursor(`${db}.${String(cmd.listIndexes)}`, coll.indexes.map((ix) => ix.spec), undefined);
  }

  /** The command's first field names the collection, whichever command it is. */
  private select(cmd: Doc, db: string, filter: unknown): Doc[] {
    for (const option of ['collation', 'hint', 'min', 'max', 'returnKey', 'showRecordId', 'tailable', 'let']) {
      if (cmd[option] !== undefined) throw notImplemented(`option ${option}`);
    }
    const query = filter === undefined ? {} : docs([filter], 'filter')[0] ?? {};
    let found = (this.existing(db, Object.values(cmd)[0])?.docs ?? []).filter((d) => matches(d, query));
    if (isDoc(cmd.sort)) found = sortDocs(found, cmd.sort);
    const skip = num(cmd.skip) ?? 0;
    const limit = Math.abs(num(cmd.limit) ?? 0);
    return found.slice(skip, limit > 0 ? skip + limit : undefined);
  }

  private find(cmd: Doc, db: string): Doc {
    const ns = `${db}.${str(cmd.find, 'find')}`;
    if (isDoc(cmd.projection) && Object.keys(cmd.projection).length > 0) throw notImplemented('projection');
    const found = this.select(cmd, db, cmd.filter);
    // mongod's first batch is 101 documents unless asked otherwise; a negative limit means one batch.
    const singleBatch = cmd.singleBatch === true || (num(cmd.limit) ?? 0) < 0;
    return this.openCursor(ns, found, num(cmd.batchSize) ?? 101, singleBatch);
  }

  /** Cursor ids must be int64: the driver takes an int32 id for a missing field. */
  private openCursor(ns: string, all: Doc[], batchSize: number | undefined, singleBatch = false): Doc {
    const firstBatch = takeBatch(all, batchSize);
    let id = Long.ZERO;
    if (all.length > 0 && !singleBatch) {
      id = Long.fromNumber(++this.cursorCount);
      this.cursors.set(id.toString(), { ns, docs: all });
    }
    return { cursor: { firstBatch, id, ns }, ok: 1 };
  }

  private getMore(cmd: Doc): Doc {
    const id = String(cmd.getMore);
    const cursor = this.cursors.get(id);
    if (!cursor) throw new CommandError(43, 'CursorNotFound', `cursor id ${id} not found`);
    const nextBatch = takeBatch(cursor.docs, num(cmd.batchSize) || undefined);
    const done = cursor.docs.length === 0;
    if (done) this.cursors.delete(id);
    return { cursor: { nextBatch, id: done ? Long.ZERO : Long.fromString(id), ns: cursor.ns }, ok: 1 };
  }

  private killCursors(cmd: Doc): Doc {
    const ids = list(cmd.cursors, 'cursors').map(String);
    const killed = new Set(ids.filter((id) => this.cursors.delete(id)));
    const longs = (keep: boolean): Long[] => ids.filter((id) => killed.has(id) === keep).map((id) => Long.fromString(id));
    return { cursorsKilled: longs(true), cursorsNotFound: longs(false), cursorsAlive: [], cursorsUnknown: [], ok: 1 };
  }

  /** Only what countDocuments sends: $match, $skip, $limit, then {$group: {_id: 1, n: {$sum: 1}}}. */
  private aggregate(cmd: Doc, db: string): Doc {
    const ns = `${db}.${str(cmd.aggregate, 'aggregate')}`;
    const stages = docs(cmd.pipeline, 'pipeline');
    const counting: Doc = { aggregate: cmd.aggregate };
    for (const [i, stage] of stages.entries()) {
      const [op, arg] = Object.entries(stage)[0] ?? [];
      if (op === '$match' && i === 0) counting.filter = arg;
      else if ((op === '$skip' || op === '$limit') && num(arg) !== undefined) counting[op.slice(1)] = arg;
      else if (op === '$group' && i === stages.length - 1 && isCountGroup(arg)) counting.group = arg;
      else throw notImplemented(`aggregation stage ${canonical(stage)}`);
    }
    if (!isDoc(counting.group) || cmd.explain !== undefined) throw notImplemented('this aggregation');
    const n = this.select(counting, db, counting.filter).length;
    // mongod's $group emits nothing for empty input; the driver turns that into a count of 0.
    return this.openCursor(ns, n === 0 ? [] : [{ _id: counting.group._id, n }], undefined);
  }

  private delete(cmd: Doc, db: string): Doc {
    const coll = this.existing(db, cmd.delete);
    let n = 0;
    for (const statement of docs(cmd.deletes, 'deletes')) {
      if (statement.collation !== undefined || statement.hint !== undefined) throw notImplemented('delete options');
      const filter = docs([statement.q], 'q')[0] ?? {};
      if (coll) n += remove(coll, (d) => matches(d, filter), num(statement.limit) ?? 0);
    }
    return { n, ok: 1 };
  }

  /** Each statement on the first match, as mongod does without `multi`; a duplicate key is that statement's write error. */
  private update(cmd: Doc, db: string): Doc {
    const ns = `${db}.${str(cmd.update, 'update')}`;
    const coll = this.ensure(db, cmd.update);
    const writeErrors: Doc[] = [];
    const upserted: Doc[] = [];
    let n = 0;
    let nModified = 0;
    for (const [index, statement] of docs(cmd.updates, 'updates').entries()) {
      if (statement.multi === true || statement.arrayFilters !== undefined || statement.collation !== undefined || statement.hint !== undefined) {
        throw notImplemented('update options (multi, arrayFilters, collation, hint)');
      }
      const outcome = modify(coll, ns, docs([statement.q], 'q')[0] ?? {}, statement.u, statement.upsert === true);
      if ('error' in outcome) {
        writeErrors.push({ ...outcome.error, index });
        if (cmd.ordered === false) continue;
        break;
      }
      n += 1;
      if (outcome.inserted) upserted.push({ index, _id: outcome.after._id });
      else nModified += canonical(outcome.before) === canonical(outcome.after) ? 0 : 1;
    }
    return { n, nModified, ...(upserted.length > 0 ? { upserted } : {}), ...(writeErrors.length > 0 ? { writeErrors } : {}), ok: 1 };
  }

  /** findOneAndUpdate: the first match (no sort), its document before or after (`new`); a duplicate key fails the command. */
  private findAndModify(cmd: Doc, db: string): Doc {
    const name = cmd.findAndModify ?? cmd.findandmodify;
    const ns = `${db}.${str(name, 'findAndModify')}`;
    for (const option of ['remove', 'sort', 'fields', 'arrayFilters', 'collation', 'hint', 'let']) {
      if (cmd[option] !== undefined && !(option === 'remove' && cmd.remove === false) && !(isDoc(cmd[option]) && Object.keys(cmd[option]).length === 0)) {
        throw notImplemented(`findAndModify option ${option}`);
      }
    }
    const outcome = modify(this.ensure(db, name), ns, docs([cmd.query ?? {}], 'query')[0] ?? {}, cmd.update, cmd.upsert === true);
    if ('error' in outcome) throw new CommandError(11000, 'DuplicateKey', String(outcome.error.errmsg));
    if (outcome.after === null) return { lastErrorObject: { n: 0, updatedExisting: false }, value: null, ok: 1 };
    const lastErrorObject = outcome.inserted ? { n: 1, updatedExisting: false, upserted: outcome.after._id } : { n: 1, updatedExisting: true };
    return { lastErrorObject, value: cmd.new === true ? outcome.after : outcome.before, ok: 1 };
  }

  /** Since 7.0 mongod no longer fails when the collection does not exist. */
  private drop(cmd: Doc, db: string): Doc {
    const ns = `${db}.${str(cmd.drop, 'drop')}`;
    const coll = this.collections.get(ns);
    this.collections.delete(ns);
    for (const [id, cursor] of this.cursors) if (cursor.ns === ns) this.cursors.delete(id);
    return coll ? { nIndexesWas: coll.indexes.length, ns, ok: 1 } : { ok: 1 };
  }

  private dropDatabase(db: string): Doc {
    for (const ns of this.collections.keys()) if (ns.startsWith(`${db}.`)) this.collections.delete(ns);
    return { dropped: db, ok: 1 };
  }

  /** Modes as in mongod: {times: n}, {skip: n} (skip n, then always on), 'alwaysOn' and 'off'. */
  private configureFailPoint(cmd: Doc): Doc {
    if (cmd.configureFailPoint !== 'failCommand') throw new CommandError(2, 'BadValue', 'only failCommand exists here');
    const data = isDoc(cmd.data) ? cmd.data : {};
    const commands = new Set(Array.isArray(data.failCommands) ? (data.failCommands as unknown[]).map(String) : []);
    const mode = cmd.mode;
    const times = isDoc(mode) ? num(mode.times) : undefined;
    const skip = isDoc(mode) ? num(mode.skip) : undefined;
    if (mode === 'off') this.failPoint = undefined;
    else if (mode === 'alwaysOn') this.failPoint = { commands, skip: 0, remaining: Infinity, data };
    else if (times !== undefined) this.failPoint = { commands, skip: 0, remaining: times, data };
    else if (skip !== undefined) this.failPoint = { commands, skip, remaining: Infinity, data };
    else throw notImplemented(`failpoint mode ${canonical(mode)}`);
    return { count: 0, ok: 1 };
  }
}

// ---------------------------------------------------------------- cursors, indexes, writes

/** Without a batch size, stops at mongod's 16 MiB reply limit; always takes at least one. */
function takeBatch(remaining: Doc[], batchSize: number | undefined): Doc[] {
  let count = 0;
  let bytes = 0;
  while (count < remaining.length && (batchSize === undefined || count < batchSize)) {
    bytes += calculateObjectSize(remaining[count] ?? {});
    if (count > 0 && bytes > MAX_BATCH_BYTES) break;
    count++;
  }
  return remaining.splice(0, count);
}

function newIndex(spec: Doc, unique: boolean): Index {
  return { spec, fields: Object.keys(isDoc(spec.key) ? spec.key : {}), unique, seen: new Set() };
}

/** A missing field counts as null, as in mongod: two documents without it collide. */
const keyValues = (index: Index, doc: Doc): unknown[] => index.fields.map((f) => valuesAt(doc, f)[0] ?? null);
const uniqueKey = (index: Index, doc: Doc): string => canonical(keyValues(index, doc));

function duplicateKeyError(index: number, ns: string, clash: Index, doc: Doc): Doc {
  const values = keyValues(clash, doc);
  const keyValue = Object.fromEntries(clash.fields.map((f, i) => [f, values[i]]));
  const errmsg = `E11000 duplicate key error collection: ${ns} index: ${String(clash.spec.name)} ` +
    `dup key: ${EJSON.stringify(keyValue, { relaxed: true })}`;
  return { index, code: 11000, errmsg, keyPattern: clash.spec.key, keyValue };
}

/** limit 0 removes every match. A removal can free any key, so unique-key sets are rebuilt. */
function remove(coll: Collection, predicate: (d: Doc) => boolean, limit: number): number {
  const before = coll.docs.length;
  let left = limit === 0 ? Infinity : limit;
  coll.docs = coll.docs.filter((d) => !(left > 0 && predicate(d) && left-- > 0));
  for (const ix of coll.indexes) ix.seen = new Set(ix.unique ? coll.docs.map((d) => uniqueKey(ix, d)) : []);
  return before - coll.docs.length;
}

type Modified = { before: Doc | null; after: Doc; inserted: boolean } | { before: null; after: null; inserted: false } | { error: Doc };

/**
 * One update of the first document matching `filter`, in place. With `upsert` and no match, the new
 * document is the filter's equality fields, then the update with $setOnInsert applied, as mongod
 * builds it; if its _id (or another unique key) is taken, mongod fails with 11000, and so does this.
 */
function modify(coll: Collection, ns: string, filter: Doc, update: unknown, upsert: boolean): Modified {
  if (!isDoc(update)) throw notImplemented('replacement or pipeline updates');
  const operators = Object.keys(update);
  if (operators.length === 0 || operators.some((op) => !UPDATE_OPERATORS.has(op))) throw notImplemented(`update ${canonical(update)}`);
  const found = coll.docs.findIndex((d) => matches(d, filter));
  if (found >= 0) {
    const before = coll.docs[found] as Doc;
    const after = applyUpdate(structuredCloneDoc(before), update, false);
    if (canonical(after._id) !== canonical(before._id)) throw new CommandError(66, 'ImmutableField', "Performing an update on the path '_id' would modify the immutable field '_id'");
    coll.docs[found] = after;
    for (const ix of coll.indexes) ix.seen = new Set(ix.unique ? coll.docs.map((d) => uniqueKey(ix, d)) : []);
    return { before, after, inserted: false };
  }
  if (!upsert) return { before: null, after: null, inserted: false };
  const seed: Doc = {};
  for (const [key, cond] of Object.entries(filter)) {
    if (key.startsWith('$') || (isDoc(cond) && Object.keys(cond)[0]?.startsWith('$'))) continue;
    seed[key] = cond;
  }
  const fresh = applyUpdate(seed, update, true);
  const doc = { _id: '_id' in fresh ? fresh._id : new ObjectId(), ...fresh };
  const clash = coll.indexes.find((ix) => ix.unique && ix.seen.has(uniqueKey(ix, doc)));
  if (clash) return { error: duplicateKeyError(0, ns, clash, doc) };
  for (const ix of coll.indexes) if (ix.unique) ix.seen.add(uniqueKey(ix, doc));
  coll.docs.push(doc);
  return { before: null, after: doc, inserted: true };
}

const UPDATE_OPERATORS = new Set(['$inc', '$set', '$setOnInsert', '$max']);

/** A copy that keeps the BSON wrappers (Int32, Double, Long) as they are. */
function structuredCloneDoc(doc: Doc): Doc {
  return deserialize(serialize(doc), EXACT);
}

function applyUpdate(doc: Doc, update: Doc, inserting: boolean): Doc {
  const touched = new Set<string>();
  for (const [op, fields] of Object.entries(update)) {
    if (!isDoc(fields)) throw new CommandError(9, 'FailedToParse', `Modifiers operate on fields but we found type ${typeof fields} instead`);
    if (op === '$setOnInsert' && !inserting) continue;
    for (const [path, value] of Object.entries(fields)) {
      // mongod refuses two operators on one path in the same update.
      if (touched.has(path)) throw new CommandError(40, 'ConflictingUpdateOperators', `Updating the path '${path}' would create a conflict at '${path}'`);
      touched.add(path);
      const old = valuesAt(doc, path)[0];
      if (op === '$inc') setPath(doc, path, increment(old, value, path));
      else if (op === '$max') { if (old === undefined || compare(value, old) > 0) setPath(doc, path, value); }
      else setPath(doc, path, value);
    }
  }
  return doc;
}

function setPath(doc: Doc, path: string, value: unknown): void {
  const parts = path.split('.');
  let at: Doc = doc;
  for (const part of parts.slice(0, -1)) {
    const next = at[part];
    if (next === undefined) at = at[part] = {};
    else if (isDoc(next)) at = next;
    else throw notImplemented(`updating ${path} through a non-document`);
  }
  at[parts[parts.length - 1] as string] = value;
}

/** mongod's numeric promotion: a double wins, then a long; two int32s stay int32 unless they overflow. */
function increment(old: unknown, by: unknown, path: string): unknown {
  const a = old === undefined ? 0 : num(old);
  const b = num(by);
  if (a === undefined || b === undefined) throw new CommandError(14, 'TypeMismatch', `Cannot apply $inc to a value of non-numeric type at ${path}`);
  const kinds = [old === undefined ? 'Int32' : numberKind(old), numberKind(by)];
  const sum = a + b;
  if (kinds.includes('Double')) return new Double(sum);
  if (kinds.includes('Long') || Math.abs(sum) > 2 ** 31 - 1) return Long.fromNumber(sum);
  return new Int32(sum);
}

function numberKind(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? 'Int32' : 'Double';
  return bsonType(v) ?? 'Double';
}

function isCountGroup(arg: unknown): arg is Doc {
  if (!isDoc(arg) || Object.keys(arg).length !== 2 || !('_id' in arg)) return false;
  const accumulator = Object.entries(arg).find(([k]) => k !== '_id')?.[1];
  return isDoc(accumulator) && Object.keys(accumulator).length === 1 && num(accumulator.$sum) === 1;
}

const INDEX_OPTIONS = new Set(['key', 'name', 'unique', 'expireAfterSeconds', 'v', 'background']);

/** Only ascending/descending keys with unique and TTL; anything else would be guessed behaviour. */
function validateIndexSpec(spec: Doc): Doc {
  const extra = Object.keys(spec).find((k) => !INDEX_OPTIONS.has(k));
  if (extra !== undefined) throw notImplemented(`index option ${extra}`);
  const key = isDoc(spec.key) ? spec.key : {};
  const badKey = Object.values(key).find((dir) => num(dir) !== 1 && num(dir) !== -1);
  if (badKey !== undefined || Object.keys(key).length === 0) throw notImplemented(`index key ${canonical(spec.key)}`);
  const ttl = spec.expireAfterSeconds;
  if (ttl !== undefined && Object.keys(key).length > 1) {
    throw new CommandError(67, 'CannotCreateIndex', 'TTL indexes are single-field indexes, compound indexes do not support TTL');
  }
  return { v: 2, key, name: str(spec.name, 'index name'), ...(spec.unique === true ? { unique: true } : {}),
    ...(ttl !== undefined ? { expireAfterSeconds: ttl } : {}) };
}

/** True when an identical index exists; a same-name or same-key index that differs is a conflict (86/85). */
function alreadyExists(existing: Index[], wanted: Doc): boolean {
  const options = (s: Doc): string => canonical([s.unique === true, s.expireAfterSeconds ?? null]);
  for (const { spec } of existing) {
    const sameName = spec.name === wanted.name;
    const sameKey = canonical(spec.key) === canonical(wanted.key);
    if (sameName && !sameKey) {
      throw new CommandError(86, 'IndexKeySpecsConflict', `An existing index has the same name but a different key: ${String(spec.name)}`);
    }
    if (sameName && options(spec) === options(wanted)) return true;
    if (sameKey) {
      throw new CommandError(85, 'IndexOptionsConflict', `An equivalent index already exists with a different name or options: ${String(spec.name)}`);
    }
  }
  return false;
}

/** Fails with 11000 when existing documents already break the new unique index. */
function buildIndex(coll: Collection, spec: Doc): Index {
  const index = newIndex(spec, spec.unique === true);
  for (const doc of index.unique ? coll.docs : []) {
    const key = uniqueKey(index, doc);
    if (index.seen.has(key)) throw new CommandError(11000, 'DuplicateKey', `E11000 duplicate key error index: ${String(spec.name)}`);
    index.seen.add(key);
  }
  return index;
}

export async function startMongoDouble(opts: { port?: number; maxWriteBatchSize?: number } = {}): Promise<MongoDouble> {
  const server = new MongoDoubleServer(opts.port ?? 0, opts.maxWriteBatchSize ?? 100_000);
  await server.start();
  return server;
}
