/**
 * `institutionHeader.trustedFrom`: addresses and CIDR blocks, IPv4 and IPv6, checked with
 * node's BlockList (which also matches an IPv4 rule against an IPv4-mapped IPv6 peer, `::ffff:10.1.2.3`,
 * as a dual-stack server reports IPv4 clients).
 */
import { BlockList, isIP } from 'node:net';

export class AddressSet {
  readonly #list = new BlockList();
  readonly entries: readonly string[];

  /** Entries must have passed `addressProblem`. */
  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const { address, prefix, family } = split(entry) as Parsed;
      if (prefix === null) this.#list.addAddress(address, family);
      else this.#list.addSubnet(address, prefix, family);
    }
    this.entries = Object.freeze([...entries]);
  }

  has(address: string | undefined): boolean {
    if (address === undefined || this.entries.length === 0) return false;
    const version = isIP(address);
    if (version === 0) return false;
    return this.#list.check(address, version === 4 ? 'ipv4' : 'ipv6');
  }

  toJSON(): readonly string[] {
    return this.entries;
  }
}

interface Parsed {
  address: string;
  prefix: number | null;
  family: 'ipv4' | 'ipv6';
}

function split(entry: string): Parsed | null {
  const slash = entry.indexOf('/');
  const address = slash === -1 ? entry : entry.slice(0, slash);
  const version = isIP(address);
  if (version === 0) return null;
  const family = version === 4 ? 'ipv4' : 'ipv6';
  if (slash === -1) return { address, prefix: null, family };
  const bits = entry.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits)) return null;
  const prefix = Number(bits);
  return prefix > (version === 4 ? 32 : 128) ? null : { address, prefix, family };
}

/** Why `entry` is not an address or a CIDR block, or null when it is. */
export function addressProblem(entry: string): string | null {
  return split(entry) === null ? `"${entry}" is not an IP address or CIDR block (e.g. 10.0.0.0/8, fd00::/8, 192.0.2.7)` : null;
}
