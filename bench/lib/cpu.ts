// CPU time a process has used (user + system, all its threads: JS, GC helpers, libuv pool), from
// /proc/<pid>/stat. Per request it is a steadier cost figure than req/s on a shared machine: it
// does not move when a neighbour takes a core, only when the work per request changes.
import { readFileSync } from 'node:fs';

// USER_HZ, which Linux fixes at 100 for /proc on every architecture Node runs on.
const TICKS_PER_SECOND = 100;

export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  // Fields after the command name, which is in parentheses and may itself hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}
