/**
 * Fakes a disk that has stopped taking data for a while (a slow or congested volume): every
 * journal segment write waits until the test opens the gate, then goes to the real file.
 * Installed on the SegmentWriter prototype, so it acts on every journal of the process until
 * `restore()`.
 */
import { SegmentWriter } from '../../src/audit/journal/journal-writer.ts';

export interface SlowDisk {
  /** Writes waiting at the gate. */
  readonly waiting: number;
  /** Lets every waiting and later write through. */
  open(): void;
  restore(): void;
}

export function installSlowDisk(): SlowDisk {
  // The real method, called on the writer it belongs to.
  const original = Reflect.get<SegmentWriter, 'write'>(SegmentWriter.prototype, 'write');
  let waiting = 0;
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  SegmentWriter.prototype.write = async function write(this: SegmentWriter, data: Buffer): Promise<void> {
    waiting++;
    await gate;
    waiting--;
    return original.call(this, data);
  };
  return {
    get waiting() {
      return waiting;
    },
    open: () => release(),
    restore: () => {
      release();
      SegmentWriter.prototype.write = original;
    },
  };
}
