// Where callbacks may go (SSRF). A callback URL is the client's, but the request comes from
// our network: without a policy, a tenant could make Tasklane POST to the cloud metadata
// service, to PostgreSQL's or Redis' host, or to anything else reachable only from inside.
//
// The policy is an allowlist: only globally routable unicast addresses (IPv4 outside every
// special-purpose block of RFC 6890 and its updates; IPv6 inside 2000::/3 but outside its
// special blocks). IPv4-mapped and NAT64 IPv6 addresses are judged by the IPv4 address they
// carry. It is checked twice: when the task is created (every address the host resolves to),
// and when delivering, on the very address connected to (DNS may have changed since: a
// "rebinding" name that resolved to a public address then and a private one now is refused).
// WEBHOOK_ALLOW_PRIVATE_NETWORKS=true turns the address checks off (a receiver on this host
// or the internal network, as in the tests); the URL's form is always checked.
import dns from 'node:dns';
import net from 'node:net';

/** The longest callback URL accepted. */
export const MAX_CALLBACK_URL_LENGTH = 2048;
const DNS_TIMEOUT_MS = 5000;

type Block = [bytes: number[], bits: number, what: string];

// IPv4 special-purpose blocks (IANA registry, RFC 6890 and updates): none is a public receiver.
const IPV4_BLOCKS: Block[] = [
  [[0, 0, 0, 0], 8, 'unspecified ("this network")'],
  [[10, 0, 0, 0], 8, 'private (RFC 1918)'],
  [[100, 64, 0, 0], 10, 'carrier-grade NAT (shared address space)'],
  [[127, 0, 0, 0], 8, 'loopback'],
  [[169, 254, 0, 0], 16, 'link-local (cloud metadata services live here)'],
  [[172, 16, 0, 0], 12, 'private (RFC 1918)'],
  [[192, 0, 0, 0], 24, 'IETF protocol assignments'],
  [[192, 0, 2, 0], 24, 'documentation'],
  [[192, 31, 196, 0], 24, 'AS112'],
  [[192, 52, 193, 0], 24, 'AMT'],
  [[192, 88, 99, 0], 24, '6to4 relay anycast'],
  [[192, 168, 0, 0], 16, 'private (RFC 1918)'],
  [[192, 175, 48, 0], 24, 'direct delegation AS112'],
  [[198, 18, 0, 0], 15, 'benchmarking'],
  [[198, 51, 100, 0], 24, 'documentation'],
  [[203, 0, 113, 0], 24, 'documentation'],
  [[224, 0, 0, 0], 4, 'multicast'],
  [[240, 0, 0, 0], 4, 'reserved (and broadcast)'],
];

// IPv6 special-purpose blocks inside 2000::/3 (everything outside it is not global unicast).
const IPV6_BLOCKS: Block[] = [
  [[0x20, 0x01, 0x0d, 0xb8], 32, 'documentation'],
  [[0x20, 0x01, 0x00, 0x00], 23, 'IETF protocol assignments (Teredo, ORCHID, …)'],
  [[0x20, 0x02], 16, '6to4 (can tunnel to any IPv4 address)'],
  [[0x3f, 0xff], 20, 'documentation'],
];

function inBlock(bytes: number[], [prefix, bits]: Block): boolean {
  for (let i = 0; i * 8 < bits; i++) {
    const mask = bits - i * 8 >= 8 ? 0xff : (0xff << (8 - (bits - i * 8))) & 0xff;
    if (((bytes[i] ?? 0) & mask) !== ((prefix[i] ?? 0) & mask)) return false;
  }
  return true;
}

function ipv4Bytes(address: string): number[] {
  return address.split('.').map(Number);
}

/** The 16 bytes of an IPv6 address (with or without an embedded dotted IPv4 tail). */
function ipv6Bytes(address: string): number[] {
  let text = address.replace(/%.*$/, ''); // a zone id (fe80::1%eth0) is not part of the address
  let tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    tail = ipv4Bytes(dotted[1]);
    text = text.slice(0, -dotted[1].length) + '0:0';
  }
  const [head, rest] = text.split('::');
  const groups = (part: string | undefined) => (part ? part.split(':').filter((g) => g !== '') : []);
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const zeros = 8 - left.length - right.length;
  const all = [...left, ...Array<string>(rest === undefined ? 0 : zeros).fill('0'), ...right].map((g) => parseInt(g, 16));
  const bytes = all.flatMap((g) => [g >> 8, g & 0xff]);
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes;
}

/**
 * Why `address` (an IP address as text) is not a public unicast address, or null when it is.
 * IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) addresses are judged by their IPv4 address.
 */
export function nonPublicReason(address: string): string | null {
  const family = net.isIP(address.replace(/%.*$/, ''));
  if (family === 4) {
    const bytes = ipv4Bytes(address);
    return IPV4_BLOCKS.find((block) => inBlock(bytes, block))?.[2] ?? null;
  }
  if (family !== 6) return 'not an IP address';
  const bytes = ipv6Bytes(address);
  const embedded = bytes.slice(12).join('.');
  if (inBlock(bytes, [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff], 96, ''])) return nonPublicReason(embedded);
  if (inBlock(bytes, [[0, 0x64, 0xff, 0x9b], 96, ''])) return nonPublicReason(embedded);
  if (bytes.every((b, i) => (i < 15 ? b === 0 : b <= 1))) return bytes[15] === 1 ? 'loopback' : 'unspecified';
  if (inBlock(bytes, [[0xfc], 7, ''])) return 'unique local (fc00::/7)';
  if (inBlock(bytes, [[0xfe, 0x80], 10, ''])) return 'link-local';
  if (inBlock(bytes, [[0xff], 8, ''])) return 'multicast';
  if (!inBlock(bytes, [[0x20], 3, ''])) return 'not global unicast (outside 2000::/3)';
  return IPV6_BLOCKS.find((block) => inBlock(bytes, block))?.[2] ?? null;
}

/** A callback URL refused; `message` is safe to show the client. */
export class CallbackUrlRefused extends Error {
  override name = 'CallbackUrlRefused';
}

/** The host of a URL without IPv6 brackets. */
const hostOf = (url: URL) => url.hostname.replace(/^\[(.*)\]$/, '$1');

/**
 * Checks a callback URL as a client gave it; the normalised URL (what is stored and POSTed
 * to) or CallbackUrlRefused. A host name must resolve, and (unless `allowPrivate`) only to
 * public addresses: the message does not say which it failed, nor what it resolved to, so
 * that the check tells a client nothing about our internal DNS.
 */
export async function checkCallbackUrl(raw: string, allowPrivate: boolean): Promise<string> {
  if (raw.length > MAX_CALLBACK_URL_LENGTH) throw new CallbackUrlRefused(`callbackUrl is longer than ${MAX_CALLBACK_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CallbackUrlRefused('callbackUrl is not an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CallbackUrlRefused(`callbackUrl must be http or https, not ${url.protocol.slice(0, -1).slice(0, 20)}`);
  if (url.username || url.password) throw new CallbackUrlRefused('callbackUrl must not carry credentials (user:password@); authenticate the callback by its signature');
  const host = hostOf(url);
  if (!host) throw new CallbackUrlRefused('callbackUrl has no host');
  if (url.href.length > MAX_CALLBACK_URL_LENGTH) throw new CallbackUrlRefused(`callbackUrl is longer than ${MAX_CALLBACK_URL_LENGTH} characters`);
  if (allowPrivate) return url.href;
  if (net.isIP(host)) {
    const reason = nonPublicReason(host);
    if (reason) throw new CallbackUrlRefused(`callbackUrl must point to a public address; ${host} is ${reason}`);
    return url.href;
  }
  const refused = new CallbackUrlRefused(`callbackUrl's host ${host.slice(0, 253)} does not resolve to public addresses only`);
  let addresses: dns.LookupAddress[];
  try {
    addresses = await lookupAll(host);
  } catch {
    throw refused;
  }
  if (addresses.length === 0 || addresses.some((a) => nonPublicReason(a.address) !== null)) throw refused;
  return url.href;
}

function lookupAll(host: string): Promise<dns.LookupAddress[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`DNS lookup of ${host} took longer than ${DNS_TIMEOUT_MS} ms`)), DNS_TIMEOUT_MS);
    dns.lookup(host, { all: true, verbatim: true }, (error, addresses) => {
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(addresses);
    });
  });
}

/** A delivery refused by the policy (the error recorded for that attempt). */
export class AddressRefused extends Error {
  override name = 'AddressRefused';
}

/**
 * The `lookup` of an outgoing callback request: resolves as node would, then refuses the
 * connection unless every address is allowed, so the socket connects only to an address that
 * was checked (no second lookup between check and connect).
 */
export function guardedLookup(allowPrivate: boolean): net.LookupFunction {
  return ((hostname: string, options: dns.LookupOptions, callback: (...args: unknown[]) => void) => {
    dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error);
      const list = addresses as dns.LookupAddress[];
      if (!allowPrivate && (list.length === 0 || list.some((a) => nonPublicReason(a.address) !== null))) {
        return callback(new AddressRefused(`refused: ${hostname} now resolves to a non-public address (WEBHOOK_ALLOW_PRIVATE_NETWORKS is false)`));
      }
      if (options.all) callback(null, list);
      else callback(null, list[0].address, list[0].family);
    });
  }) as net.LookupFunction;
}

/** The address-policy refusal of a URL whose host is an IP literal (node connects to those without a lookup). */
export function literalRefusal(url: URL, allowPrivate: boolean): string | null {
  const host = hostOf(url);
  if (allowPrivate || !net.isIP(host)) return null;
  const reason = nonPublicReason(host);
  return reason ? `refused: ${host} is ${reason} (WEBHOOK_ALLOW_PRIVATE_NETWORKS is false)` : null;
}
