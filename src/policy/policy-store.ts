/**
 * Holds the current Policy and replaces it when the file changes or on SIGHUP. A good file is
 * swapped in with one assignment: a request takes `current()` once and keeps that snapshot to
 * its end. A bad file leaves the current policy in place; the error is logged, kept for
 * /healthz and reported to `onReload` (openai_proxy_policy_reloads_total{result}).
 *
 * The directory is watched, not the file: editors save by writing a new file and renaming it
 * over the old one, and a Kubernetes ConfigMap volume swaps a `..data` symlink, both of which
 * a watch on the file's inode would miss after the first change.
 */
import { hash } from 'node:crypto';
import { type FSWatcher, readFileSync, realpathSync, watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { errorMessage, log } from '../log.ts';
import { notEnforced } from './not-enforced.ts';
import { type LoadOptions, PolicyFileError, parsePolicy, policyFormat } from './policy-file.ts';
import type { Policy } from './types.ts';

export type ReloadResult = 'success' | 'error';
export type ReloadTrigger = 'file' | 'signal' | 'call';

export interface PolicyStoreOptions extends LoadOptions {
  /** Called after every reload attempt (not at start): the metrics count these. */
  onReload?: (result: ReloadResult, error: PolicyFileError | null) => void;
  /** Quiet time after the last file event before the file is read again. */
  debounceMs?: number;
}

export interface PolicyStatus {
  path: string;
  sha256: string;
  loadedAt: string;
  /** The last reload's error while the policy in force is an older one; null once a reload succeeds. */
  lastError: string | null;
  lastErrorAt: string | null;
  /** What the file sets that this version does not enforce yet (not-enforced.ts). */
  notEnforced: string[];
}

function warnNotEnforced(policy: Policy, path: string): void {
  const parts = notEnforced(policy);
  if (parts.length > 0) log.warn('the policy file sets what this version does not enforce yet; no request is refused or rewritten by it', { path, notEnforced: parts });
}

export class PolicyStore {
  readonly #path: string;
  readonly #options: PolicyStoreOptions;
  #current: Policy;
  #lastError: { message: string; at: Date } | null = null;
  /** sha256 of the bytes last tried, good or bad, so a file event that changed nothing is no reload. */
  #lastTried: string;
  readonly #watchers = new Map<string, FSWatcher>();
  #timer: NodeJS.Timeout | null = null;
  #onSignal: (() => void) | null = null;
  #closed = false;

  /** Loads the file now; a bad one throws PolicyFileError (the proxy does not start). */
  constructor(path: string, options: PolicyStoreOptions) {
    this.#path = path;
    this.#options = options;
    this.#current = this.#load(this.#read());
    warnNotEnforced(this.#current, this.#path);
    this.#lastTried = this.#current.source.sha256;
  }

  /** The policy for one request: take it once and use it to the request's end. */
  current(): Policy {
    return this.#current;
  }

  status(): PolicyStatus {
    return {
      path: this.#path,
      sha256: this.#current.source.sha256,
      loadedAt: this.#current.source.loadedAt.toISOString(),
      lastError: this.#lastError?.message ?? null,
      lastErrorAt: this.#lastError?.at.toISOString() ?? null,
      notEnforced: notEnforced(this.#current),
    };
  }

  /** Reads the file again, whatever changed (secrets in `upstreamKey` files and the environment too). */
  reload(trigger: ReloadTrigger = 'call'): ReloadResult {
    let bytes: Buffer;
    try {
      bytes = this.#read();
    } catch (err) {
      return this.#failed(err, trigger);
    }
    return this.#reloadFrom(bytes, trigger);
  }

  /** Starts following the file and SIGHUP. */
  watch(): this {
    if (this.#onSignal !== null || this.#closed) return this;
    this.#onSignal = () => this.reload('signal');
    process.on('SIGHUP', this.#onSignal);
    this.#follow();
    return this;
  }

  close(): void {
    this.#closed = true;
    if (this.#onSignal !== null) process.off('SIGHUP', this.#onSignal);
    this.#onSignal = null;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    for (const watcher of this.#watchers.values()) watcher.close();
    this.#watchers.clear();
  }

  #read(): Buffer {
    try {
      return readFileSync(this.#path);
    } catch (err) {
      throw new PolicyFileError([`${this.#path}: cannot read: ${errorMessage(err)}`]);
    }
  }

  #load(bytes: Buffer): Policy {
    const format = policyFormat(this.#path);
    if (format === null) throw new PolicyFileError([`${this.#path}: expected a .yaml, .yml or .json file`]);
    return parsePolicy(bytes, this.#path, format, this.#options);
  }

  #reloadFrom(bytes: Buffer, trigger: ReloadTrigger): ReloadResult {
    this.#lastTried = hash('sha256', bytes, 'hex');
    let policy: Policy;
    try {
      policy = this.#load(bytes);
    } catch (err) {
      return this.#failed(err, trigger);
    }
    this.#current = policy;
    this.#lastError = null;
    log.info('policy loaded', { path: this.#path, sha256: policy.source.sha256, trigger });
    warnNotEnforced(policy, this.#path);
    this.#report('success', null);
    return 'success';
  }

  #failed(err: unknown, trigger: ReloadTrigger): ReloadResult {
    const error = err instanceof PolicyFileError ? err : new PolicyFileError([`${this.#path}: ${errorMessage(err)}`]);
    this.#lastError = { message: error.message, at: new Date() };
    log.error('policy reload failed; the previous policy stays in force', {
      path: this.#path,
      trigger,
      problems: error.problems,
      sha256: this.#current.source.sha256,
    });
    this.#report('error', error);
    return 'error';
  }

  #report(result: ReloadResult, error: PolicyFileError | null): void {
    try {
      this.#options.onReload?.(result, error);
    } catch (err) {
      log.error('policy reload observer failed', { error: errorMessage(err) });
    }
  }

  /** After a quiet spell, re-read the file if its bytes changed (or it cannot be read). */
  #changed(): void {
    if (this.#closed) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (this.#closed) return;
      this.#follow();
      let bytes: Buffer;
      try {
        bytes = this.#read();
      } catch (err) {
        this.#lastTried = '';
        this.#failed(err, 'file');
        return;
      }
      if (hash('sha256', bytes, 'hex') !== this.#lastTried) this.#reloadFrom(bytes, 'file');
    }, this.#options.debounceMs ?? 200);
    this.#timer.unref();
  }

  /**
   * Watches the file's directory, and the directory of the file the path resolves to when
   * that is elsewhere (a symlink); the second changes with each ConfigMap swap, so it is redone.
   */
  #follow(): void {
    const wanted = new Map<string, string>([[dirname(resolve(this.#path)), basename(this.#path)]]);
    try {
      const real = realpathSync(this.#path);
      if (!wanted.has(dirname(real))) wanted.set(dirname(real), basename(real));
    } catch {
      // Gone for now (mid-swap, or deleted): the directory watch sees it come back.
    }
    for (const [dir, watcher] of this.#watchers) {
      if (!wanted.has(dir)) {
        watcher.close();
        this.#watchers.delete(dir);
      }
    }
    for (const [dir, name] of wanted) {
      if (this.#watchers.has(dir)) continue;
      let watcher: FSWatcher;
      try {
        watcher = watch(dir, { persistent: false }, (_event, file) => {
          // `..data` and `..2026_…` are a ConfigMap's; temp and swap files of editors are not ours.
          if (file === null || file === name || file.startsWith('..')) this.#changed();
        });
      } catch (err) {
        log.warn('cannot watch the policy file directory; SIGHUP still reloads', { dir, error: errorMessage(err) });
        continue;
      }
      watcher.on('error', () => {
        watcher.close();
        if (this.#watchers.get(dir) === watcher) this.#watchers.delete(dir);
        this.#changed();
      });
      this.#watchers.set(dir, watcher);
    }
  }
}
