/**
 * A context manager that tracks nothing: `active()` is always the root context. The proxy gives
 * every span its parent explicitly, so it needs none; registering this one keeps the SDK from
 * installing its default, whose AsyncLocalStorage turns on async hooks on Node 20 for every
 * promise and socket of the process, a cost every exchange pays (bench/README.md, "What the CPU
 * goes to"). The API's own NoopContextManager does the same but is not exported.
 */
import { ROOT_CONTEXT, type Context, type ContextManager } from '@opentelemetry/api';

export class ExplicitContextOnly implements ContextManager {
  active(): Context {
    return ROOT_CONTEXT;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    _context: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return fn.call(thisArg, ...args);
  }

  bind<T>(_context: Context, target: T): T {
    return target;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    return this;
  }
}
